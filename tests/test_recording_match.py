"""Matching for replay: canonical SOAP/XML, ignored JSON keys, recorded order, misses that explain, O(1) lookups."""

from __future__ import annotations

import json

import pytest

from gateway.recording.har import Exchange
from gateway.recording.match import MatchSettings, NoMatch, ReplayIndex

SOAP_URL = "http://agency.example.vn/soap"
XML = (("Content-Type", "text/xml; charset=utf-8"),)
JSON = (("Content-Type", "application/json"),)


def envelope(
    code: str, message_id: str = "uuid:1", created: str = "2026-11-22T03:00:00Z", pretty: bool = False
) -> bytes:
    sep = "\n    " if pretty else ""
    return (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:wsa="http://www.w3.org/2005/08/addressing" '
        'xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" '
        'xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd" '
        'xmlns:tn="urn:dvc:motcua">'
        f"{sep}<soap:Header><wsa:MessageID>{message_id}</wsa:MessageID><wsa:Action>urn:TiepNhanHoSo</wsa:Action>"
        f"<wsse:Security><wsu:Timestamp><wsu:Created>{created}</wsu:Created>"
        f"<wsu:Expires>{created}</wsu:Expires></wsu:Timestamp></wsse:Security></soap:Header>"
        f"{sep}<soap:Body><tn:TiepNhanHoSo><tn:MaHoSo>{code}</tn:MaHoSo><tn:MaTTHC>1.009794</tn:MaTTHC>"
        f"</tn:TiepNhanHoSo></soap:Body></soap:Envelope>"
    ).encode()


def soap_exchange(code: str, answer: str, **kwargs: str) -> Exchange:
    return Exchange(
        method="POST",
        url=SOAP_URL,
        request_headers=XML,
        request_body=envelope(code, **kwargs),
        status=200,
        response_headers=XML,
        response_body=answer.encode(),
        source=f"soap.har: entry {answer}",
    )


def test_soap_ignores_message_id_and_timestamp_but_not_the_dossier_code() -> None:
    index = ReplayIndex.build([soap_exchange("H38-261122-0001", "one"), soap_exchange("H38-261122-0002", "two")])
    live = envelope("H38-261122-0001", message_id="uuid:other", created="2027-01-01T00:00:00Z", pretty=True)
    assert index.lookup("POST", SOAP_URL, XML, live).response_body == b"one"
    live2 = envelope("H38-261122-0002", message_id="uuid:x")
    assert index.lookup("POST", SOAP_URL, XML, live2).response_body == b"two"
    with pytest.raises(NoMatch) as caught:
        index.lookup("POST", SOAP_URL, XML, envelope("H38-261122-0099"))
    message = str(caught.value)
    assert "closest recorded: POST" in message
    assert "/Envelope/Body/TiepNhanHoSo/MaHoSo" in message
    assert "H38-261122-0099" in message


def test_namespace_prefixes_do_not_matter() -> None:
    index = ReplayIndex.build([soap_exchange("A-1", "one")])
    other_prefix = envelope("A-1").replace(b"tn:", b"m:").replace(b"xmlns:tn=", b"xmlns:m=")
    assert index.lookup("POST", SOAP_URL, XML, other_prefix).response_body == b"one"


def test_json_ignores_configured_keys_and_key_order() -> None:
    recorded = Exchange(
        method="POST",
        url="http://a.example/x?b=2&a=1&_=123",
        request_headers=JSON,
        request_body=json.dumps({"code": "C1", "sent_at": "t1", "nested": {"nonce": 1, "v": 2}}).encode(),
        status=200,
        response_body=b"ok",
    )
    index = ReplayIndex.build([recorded], MatchSettings(ignore_json_keys=("sent_at", "nonce")))
    live = json.dumps({"nested": {"v": 2, "nonce": 9}, "sent_at": "t2", "code": "C1"}).encode()
    # Query parameters sorted, the volatile "_" dropped.
    assert index.lookup("POST", "http://a.example:80/x?a=1&b=2&_=999", JSON, live).response_body == b"ok"
    with pytest.raises(NoMatch) as caught:
        index.lookup(
            "POST", "http://a.example/x?a=1&b=2", JSON, json.dumps({"code": "C2", "nested": {"v": 2}}).encode()
        )
    assert "first difference: body $.code: recorded 'C1', request has 'C2'" in str(caught.value)


def test_repeated_identical_requests_come_back_in_recorded_order() -> None:
    exchanges = [
        Exchange(method="GET", url="http://a.example/dossiers/X", status=200, response_body=f"{n}".encode())
        for n in range(3)
    ]
    index = ReplayIndex.build(exchanges)
    answers = [index.lookup("GET", "http://a.example/dossiers/X").response_body for _ in range(4)]
    assert answers == [b"0", b"1", b"2", b"2"]  # then the last one again
    strict = ReplayIndex.build(exchanges, repeat_last=False)
    for _ in range(3):
        strict.lookup("GET", "http://a.example/dossiers/X")
    with pytest.raises(NoMatch, match="already answered"):
        strict.lookup("GET", "http://a.example/dossiers/X")
    strict.reset()
    assert strict.lookup("GET", "http://a.example/dossiers/X").response_body == b"0"


def test_a_miss_on_another_url_names_the_most_similar_request() -> None:
    index = ReplayIndex.build(
        [
            Exchange(method="GET", url="http://a.example/dossiers/ABC/status", status=200),
            Exchange(method="POST", url="http://a.example/payments", status=200),
        ]
    )
    with pytest.raises(NoMatch) as caught:
        index.lookup("GET", "http://a.example/dossiers/ABD/status")
    assert "closest recorded: GET http://a.example:80/dossiers/ABC/status" in str(caught.value)


def test_header_differences_are_named_when_headers_are_matched() -> None:
    recorded = Exchange(
        method="POST", url=SOAP_URL, request_headers=(("SOAPAction", '"urn:TiepNhanHoSo"'),), status=200
    )
    index = ReplayIndex.build([recorded], MatchSettings(match_headers=("SOAPAction",)))
    with pytest.raises(NoMatch, match="first difference: header soapaction"):
        index.lookup("POST", SOAP_URL, (("SOAPAction", '"urn:RutHoSo"'),))


def test_lookups_do_not_scan_the_cassette() -> None:
    exchanges = [
        Exchange(
            method="POST",
            url="http://a.example/dossiers",
            request_headers=JSON,
            request_body=json.dumps({"code": f"C-{n:05d}"}).encode(),
            status=201,
            response_body=str(n).encode(),
        )
        for n in range(10_000)
    ]
    index = ReplayIndex.build(exchanges)
    assert len(index) == 10_000
    for n in (0, 4_999, 9_999):
        body = json.dumps({"code": f"C-{n:05d}"}).encode()
        assert index.lookup("POST", "http://a.example/dossiers", JSON, body).response_body == str(n).encode()
    # One recorded exchange examined per answered lookup: a hash probe, not a scan of 10,000 entries.
    assert index.stats.hits == 3
    assert index.stats.examined == 3
