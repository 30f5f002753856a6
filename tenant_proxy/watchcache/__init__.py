"""The proxy's watch cache: each filtered resource's objects and recent history, fed by one
upstream list + watch, from which every tenant watch is served (see timeline, replay)."""
