"""Replay lookups per second for a cassette of 100 and of 10,000 exchanges, and their ratio.

Each exchange is a JSON ``POST`` (distinct dossier codes) or a SOAP envelope (distinct ``MaHoSo``, volatile
``MessageID``); lookups go through the full replay path (redaction of the live request, canonicalisation, index
probe). With an O(1) index the ratio of the two rates stays near 1.0 whatever the cassette's size; a linear scan
would make the 10,000-exchange figure about a hundred times lower. Two floors are measured in the same run: the
same live requests redacted and canonicalised without any index (what a lookup cannot avoid: the replay/floor ratio
near 1.0 shows the index probe itself costs next to nothing), and a plain ``dict`` lookup of pre-computed keys.

Run: ``.venv/bin/python bench/bench_replay.py [--lookups N]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from gateway.recording.har import Exchange, write_har
from gateway.recording.transport import RecordingSettings, Replayer

JSON = (("Content-Type", "application/json"),)
XML = (("Content-Type", "text/xml; charset=utf-8"),)


def _soap(code: str, message_id: str) -> bytes:
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:t="urn:dvc:motcua">'
        f"<s:Header><a:MessageID>{message_id}</a:MessageID></s:Header>"
        f"<s:Body><t:LayTrangThaiHoSo><t:MaHoSo>{code}</t:MaHoSo></t:LayTrangThaiHoSo></s:Body></s:Envelope>"
    ).encode()


def _requests(size: int) -> list[tuple[str, tuple[tuple[str, str], ...], bytes]]:
    result = []
    for n in range(size):
        code = f"000.00.23.H38-261122-{n:05d}"
        if n % 2:
            result.append(("http://agency.example.vn/soap", XML, _soap(code, f"uuid:{n}")))
        else:
            result.append(("http://agency.example.vn/dossiers", JSON, json.dumps({"code": code}).encode()))
    return result


def _probes(requests: list, lookups: int) -> list[tuple[str, tuple[tuple[str, str], ...], bytes]]:
    result = []
    for n in range(lookups):
        url, headers, body = requests[(n * 7919) % len(requests)]
        if headers is XML:  # a fresh MessageID each time: the volatile element must not matter
            body = body.replace(b"uuid:", b"uuid:live-")
        result.append((url, headers, body))
    return result


def measure(size: int, lookups: int, workdir: Path) -> dict[str, float]:
    """Lookups per second for a cassette of ``size`` exchanges: through the replayer, and the floors."""
    directory = workdir / f"c{size}"
    requests = _requests(size)
    write_har(
        directory / "bench.har",
        [Exchange(method="POST", url=url, request_headers=h, request_body=b, status=200) for url, h, b in requests],
    )
    replayer = Replayer(directory, RecordingSettings(mode="replay"))
    probes = _probes(requests, lookups)

    start = time.perf_counter()
    for url, headers, body in probes:
        replayer.find("POST", url, headers, body)
    replay_rate = lookups / (time.perf_counter() - start)
    assert replayer.index.stats.misses == 0 and replayer.index.stats.examined == lookups

    # Floor 1: the same redaction and canonicalisation of each live request, without any index.
    start = time.perf_counter()
    for url, headers, body in probes:
        redacted_url, redacted_headers, redacted_body, _ = replayer.redactor.redact_request(url, headers, body)
        replayer.index.prepare("POST", redacted_url, redacted_headers, redacted_body)
    prepare_rate = lookups / (time.perf_counter() - start)

    # Floor 2: a plain dict lookup of pre-computed keys.
    floor = {(url, body): n for n, (url, _, body) in enumerate(requests)}
    keys = [(url, body) for url, _, body in _probes(requests, lookups)]
    keys = [(url, body.replace(b"uuid:live-", b"uuid:")) for url, body in keys]
    start = time.perf_counter()
    for key in keys:
        _ = floor[key]
    dict_rate = lookups / max(time.perf_counter() - start, 1e-9)
    return {"replay": replay_rate, "prepare": prepare_rate, "dict": dict_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = {size: measure(size, args.lookups, Path(tmp)) for size in (100, 10_000)}
    for size, f in figures.items():
        print(
            f"{size:>6} exchanges: replay {f['replay']:9.0f} lookups/s | same requests canonicalised without index "
            f"{f['prepare']:9.0f}/s (replay/floor {f['replay'] / f['prepare']:.2f}) | dict of pre-computed keys "
            f"{f['dict']:11.0f}/s"
        )
    ratio = figures[10_000]["replay"] / figures[100]["replay"]
    print(f"ratio 10,000 / 100 exchanges: {ratio:.2f} (1.0 = independent of the cassette's size; linear ~0.01)")


if __name__ == "__main__":
    main()
