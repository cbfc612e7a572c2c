"""The OpenAPI document tested against the server with schemathesis: for each token role, generated requests (schema
conforming and not) to every operation, every answer checked by schemathesis's checks (no 5xx, a documented status,
content type and headers, the body valid against the documented schema), plus the answers about real resources (a
submitted dossier, its lookup, an agency's event, the registrations, the outbox) checked against their schemas, and
stateful sequences along the document's links (a real submission, then its read, lookup, supplement, withdrawal and
agency events, each with its role's token).

The budget is fixed and the generation derandomized, so a run is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.stateful import initialize
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.stateful.state_machine import StepOutput

from gateway.api import create_app
from gateway.api.schemas import signatures
from signing import report
from tests.api_support import (
    ADMIN_TOKEN,
    AGENCY,
    AGENCY2,
    AGENCY2_TOKEN,
    AGENCY3,
    AGENCY3_TOKEN,
    AGENCY_TOKEN,
    PORTAL_TOKEN,
    UNREGISTERED,
    Clock,
    b64,
    open_runtime,
    pdf,
    registration,
    submission,
)

ROLES = {"portal": PORTAL_TOKEN, "agency": AGENCY_TOKEN, "admin": ADMIN_TOKEN}
AGENCY_TOKENS = {AGENCY: AGENCY_TOKEN, AGENCY2: AGENCY2_TOKEN, AGENCY3: AGENCY3_TOKEN}
EXAMPLES_PER_OPERATION = 4
#: The stateful run's budget: scenarios, and steps in each.
SCENARIOS, STEPS = 5, 6

#: Every default check runs. positive_data_acceptance expects a schema-valid request to succeed, but a schema cannot
#: say which procedures, agencies or dossiers exist: a valid-looking submission of an unknown procedure is rightly 422
#: (and an unknown dossier 404, which that check accepts already), so 422 is added to what it accepts.
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422"]}}}
)


def upstream_sections(folder: Path) -> dict[str, Any]:
    """Payment (both providers), postal and SMS configured (their provider-facing endpoints answer), their upstreams
    never reached."""
    secret = folder / "secret"
    secret.write_text("shared-secret-0123456789abcdef\n", encoding="utf-8")
    return {
        "payment": {
            "base_url": "http://127.0.0.1:9",
            "merchant_code": "DVCH38",
            "secret": f"file:{secret}",
            "return_url": "https://dichvucong.example.vn/thanh-toan/ket-qua",
            "national": {"base_url": "http://127.0.0.1:9", "partner_code": "H38DVC", "secret": f"file:{secret}"},
        },
        "postal": {"base_url": "http://127.0.0.1:9", "secret": f"file:{secret}"},
        "sms": {"base_url": "http://127.0.0.1:9", "secret": f"file:{secret}"},
    }


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("conformance")
    with open_runtime("sqlite", folder, **upstream_sections(folder)) as runtime:
        yield create_app(runtime, clock=Clock())


@pytest.fixture(scope="module")
def schema(app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


@pytest.fixture(scope="module")
def dossier_code(schema: Any) -> str:
    response = _call(schema, "POST", "/api/v1/dossiers", "portal", body=submission())
    assert response.status_code == 201, response.text
    return response.json()["code"]


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_the_document_names_every_answer(schema: Any) -> None:
    document = schema.raw_schema
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status == "204":
                    continue
                content = response.get("content")
                assert content, f"{method.upper()} {path} {status} has no content"
                schema_of = next(iter(content.values())).get("schema", {})
                if status.startswith(("4", "5")):
                    assert schema_of == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
                elif path != "/metrics":
                    name = schema_of["$ref"].rsplit("/", 1)[-1]
                    assert document["components"]["schemas"][name]["properties"], (method, path, status)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_generated_requests_conform(schema: Any, role: str) -> None:
    headers = {"Authorization": f"Bearer {ROLES[role]}"}
    failures: list[str] = []
    for operation in _operations(schema):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                case.call_and_validate(headers=headers)

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing in this request can be made invalid
            except Exception as exc:  # collect every operation's failure, not only the first
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)


def _call(schema: Any, method: str, path: str, role: str | None, **parts: Any) -> Any:
    case = schema[path][method].Case(**parts)
    headers = {"Authorization": f"Bearer {ROLES[role]}"} if role else None
    return case.call_and_validate(headers=headers)


def test_answers_about_real_resources_conform(schema: Any, dossier_code: str) -> None:
    code = {"code": dossier_code}
    view = _call(schema, "GET", "/api/v1/dossiers/{code}", "portal", path_parameters=code).json()
    assert view["code"] == dossier_code and view["components"][0]["verification"]["verdict"] == "unsigned"
    assert _call(schema, "GET", "/api/v1/dossiers/{code}", "agency", path_parameters=code).status_code == 200
    assert _call(schema, "GET", "/api/v1/lookup/{code}", None, path_parameters=code).json()["status"] == "submitted"
    event = {"dossier_code": dossier_code, "status": "received", "at": "2026-11-23T09:00:00+07:00"}
    outcome = _call(
        schema, "POST", "/api/v1/agencies/{agency}/events", "agency", path_parameters={"agency": AGENCY}, body=event
    )
    assert outcome.json()["status"] == "received", outcome.text
    assert _call(schema, "GET", "/api/v1/dossiers/{code}", "portal", path_parameters=code).json()["history"]
    agencies = _call(schema, "GET", "/api/v1/admin/agencies", "admin").json()["agencies"]
    assert AGENCY in [item["code"] for item in agencies]
    one = _call(schema, "GET", "/api/v1/admin/agencies/{code}", "admin", path_parameters={"code": AGENCY})
    assert one.json()["code"] == AGENCY
    assert _call(schema, "GET", "/api/v1/admin/outbox", "admin").json()["messages"]
    redrive = "/api/v1/admin/outbox/{message_id}/redrive"  # an id past 64 bits is refused, not a database error
    too_big = _call(schema, "POST", redrive, "admin", path_parameters={"message_id": 2**70})
    assert too_big.status_code == 422 and too_big.json()["error"]["details"][0]["field"] == "message_id"
    monthly = _call(schema, "GET", "/api/v1/reports", "admin", query={"period": "2026-11"}).json()
    assert monthly["period"] == "2026-11"
    assert _call(schema, "GET", "/readyz", None).json()["status"] == "ready"
    assert _call(schema, "GET", "/healthz", None).json() == {"status": "ok"}
    document = {"filename": "don.pdf", "content_base64": b64(pdf("Don de nghi"))}
    verify = "/api/v1/signatures/verify"
    verified = _call(schema, "POST", verify, "portal", body=document, media_type="application/json").json()
    assert verified["verdict"] == "unsigned" and verified["signatures"] == []
    withdrawn = _call(
        schema, "POST", "/api/v1/dossiers/{code}/withdraw", "portal", path_parameters=code, body={"reason": "Nộp nhầm"}
    )
    assert withdrawn.json()["status"] == "withdrawn", withdrawn.text
    assert _call(schema, "GET", "/api/v1/dossiers/{code}", None, path_parameters=code).status_code == 401
    missing = _call(schema, "GET", "/api/v1/lookup/{code}", None, path_parameters={"code": "000.00.23.H38-261123-9999"})
    assert missing.json()["error"]["code"] == "not_found"


def test_a_refusal_is_documented_with_the_error_model(app: Any, tmp_path: Path) -> None:
    document = app.openapi()
    refusal = document["paths"]["/api/v1/dossiers"]["post"]["responses"]["422"]
    example = refusal["content"]["application/json"]["example"]
    assert example["error"]["details"][0]["field"] == "components[0].code"


def test_the_signature_report_model_is_the_report_shape() -> None:
    result = report.SignatureResult(
        report.Indication.INDETERMINATE, report.SubIndication.NO_CERTIFICATE_CHAIN_FOUND, report.Signer("Nguyễn Văn A")
    )
    document = report.SignatureReport("don.pdf", report.Format.PADES, (result,)).to_json()
    assert set(document) == set(signatures.SignatureReport.model_fields)
    assert set(document["signatures"][0]) == set(signatures.SignatureResult.model_fields)
    assert set(document["signatures"][0]["signer"]) == set(signatures.Signer.model_fields)
    signatures.SignatureReport.model_validate(document)


def token_for(case: Any) -> str:
    """The token of the role an operation is for: the path's agency for its events and questions, the admin for
    administration, reports and metrics, the portal otherwise."""
    path = case.operation.path
    if path.startswith(("/api/v1/admin/", "/api/v1/reports", "/metrics")):
        return ADMIN_TOKEN
    if path.startswith("/api/v1/agencies/{agency}/"):
        return AGENCY_TOKENS.get(str((case.path_parameters or {}).get("agency")), AGENCY_TOKEN)
    return PORTAL_TOKEN


def test_stateful_sequences_conform(schema: Any) -> None:
    """Sequences that follow the document's links (a submitted dossier read, looked up, supplemented, withdrawn,
    reported on by its agency; a registered agency read and removed), each call with its role's token; every answer
    checked as above. Each scenario starts from a real submission, which generated bodies rarely are."""
    base = schema.as_state_machine()
    submitted = base.bundles["POST /api/v1/dossiers -> 201"]
    registered = base.bundles["POST /api/v1/admin/agencies -> 201"]

    class Workflow(base):  # type: ignore[misc,valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": {"Authorization": f"Bearer {token_for(case)}"}}

        @initialize(target=submitted)
        def a_real_dossier(self) -> StepOutput:
            case = schema["/api/v1/dossiers"]["POST"].Case(body=submission(), media_type="application/json")
            self.recorder.record_case(case=case)
            response = case.call(headers={"Authorization": f"Bearer {PORTAL_TOKEN}"})
            self.recorder.record_response(case_id=case.id, response=response)
            assert response.status_code == 201, response.text
            return StepOutput(response, case)

        @initialize(target=registered)
        def a_real_registration(self) -> StepOutput:
            document = registration(UNREGISTERED, ["1.001193"])  # competent for it, registered by no fixture
            operation = schema["/api/v1/admin/agencies"]["POST"]
            case = operation.Case(body=document, query={"replace": "true"}, media_type="application/json")
            self.recorder.record_case(case=case)
            response = case.call(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            self.recorder.record_response(case_id=case.id, response=response)
            assert response.status_code in (200, 201), response.text  # 200: a scenario before registered it
            return StepOutput(response, case)

    Workflow.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
