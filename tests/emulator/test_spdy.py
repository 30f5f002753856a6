"""SPDY/3.1 framing and port-forward stream pairing: pure parts of the emulator's kubelet."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator import spdy
from tenant_proxy.emulator.portforward import Pairing, declared_ports


def test_header_dictionary_is_the_one_spdystream_primes_zlib_with() -> None:
    # sha256 of moby/spdystream spdy/dictionary.go's headerDictionary (1,423 bytes).
    assert len(spdy.DICTIONARY) == 1423
    assert (
        hashlib.sha256(spdy.DICTIONARY).hexdigest()
        == "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
    )


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
headers = st.dictionaries(names, st.text(max_size=20).filter(lambda v: "\x00" not in v), max_size=4)


def frames_of(writer: spdy.FrameWriter, stream_id: int, h: dict[str, str], data: bytes) -> bytes:
    return (
        writer.syn_stream(stream_id, h)
        + writer.syn_reply(stream_id, h)
        + writer.data(stream_id, data, fin=True)
        + writer.ping(7)
        + writer.rst_stream(stream_id, spdy.CANCEL)
        + writer.goaway(stream_id)
    )


@given(
    st.lists(st.tuples(st.integers(1, 2**31 - 1), headers, st.binary(max_size=300)), max_size=4),
    st.integers(1, 50),
)
def test_frames_read_back_whatever_the_pieces_the_bytes_arrive_in(
    streams: list[tuple[int, dict[str, str], bytes]], piece: int
) -> None:
    # One compression context per direction for the whole connection: several header blocks in
    # a row must each inflate.
    writer, reader = spdy.FrameWriter(), spdy.FrameReader()
    wire = b"".join(frames_of(writer, sid, h, data) for sid, h, data in streams)
    got = [f for i in range(0, len(wire), piece) for f in reader.feed(wire[i : i + piece])]
    want = [
        frame
        for sid, h, data in streams
        for frame in (
            spdy.SynStream(sid, h),
            spdy.SynReply(sid, h),
            spdy.Data(sid, data, fin=True),
            spdy.Ping(7),
            spdy.RstStream(sid, spdy.CANCEL),
            spdy.GoAway(sid, 0),
        )
    ]
    assert got == want


def test_settings_and_window_updates_are_read_and_ignored() -> None:
    settings = bytes.fromhex("80030004") + b"\x00\x00\x00\x0c" + bytes(12)
    window = bytes.fromhex("80030009") + b"\x00\x00\x00\x08" + bytes(8)
    assert spdy.FrameReader().feed(settings + window) == [
        spdy.Ignored(spdy.SETTINGS),
        spdy.Ignored(spdy.WINDOW_UPDATE),
    ]


def test_another_version_is_refused() -> None:
    with pytest.raises(spdy.SpdyError, match="version 2"):
        spdy.FrameReader().feed(bytes.fromhex("80020006") + b"\x00\x00\x00\x04" + bytes(4))


def announce(pairing: Pairing, sid: int, kind: str, port: str = "8080", rid: str = "0") -> object:
    return pairing.add(sid, {"streamtype": kind, "port": port, "requestid": rid})


def test_a_request_starts_once_both_its_streams_exist() -> None:
    pairing = Pairing()
    assert announce(pairing, 1, "error") is None
    assert announce(pairing, 3, "error", rid="1") is None
    started = announce(pairing, 5, "data")
    assert started is not None
    assert not isinstance(started, str)
    assert (started.port, started.error, started.data) == (8080, 1, 5)


def test_bad_port_and_stream_type_are_errors_for_the_client() -> None:
    pairing = Pairing()
    assert announce(pairing, 1, "error", port="http") == "invalid port header: 'http'"
    assert announce(pairing, 1, "error", port="0") == "port 0 must be between 1 and 65535"
    assert announce(pairing, 1, "other") == "invalid stream type 'other'"


def test_declared_ports_are_the_containers_ports() -> None:
    pod = {
        "spec": {
            "containers": [
                {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 443}]},
                {"name": "b"},
                {"name": "c", "ports": [{"containerPort": 9090, "protocol": "TCP"}]},
            ]
        }
    }
    assert declared_ports(pod) == {80, 443, 9090}
