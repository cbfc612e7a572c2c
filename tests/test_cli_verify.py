"""`dvc-gateway verify` as a user runs it: real files, real process, exit codes and one-line errors."""

import json
import subprocess
import sys

import pytest

from gateway.cli import main

SCAN = b"\x89PNG\r\n\x1a\n" + b"scanned page" * 500


@pytest.fixture(scope="module")
def files(pki, tmp_path_factory):
    """A scan with a detached signature beside it, one signed by a revoked signer, and an unsigned file."""
    import asyncio

    directory = tmp_path_factory.mktemp("docs")

    async def sign(identity, data):
        info = await identity.pyhanko_signer().async_sign_general_data(data, "sha256", detached=True)
        return info.dump()

    good = directory / "giay-to.png"
    good.write_bytes(SCAN)
    (directory / "giay-to.png.p7s").write_bytes(asyncio.run(sign(pki.good, SCAN)))
    revoked = directory / "revoked.png"
    revoked.write_bytes(SCAN)
    other_sig = directory / "other.p7s"
    other_sig.write_bytes(asyncio.run(sign(pki.revoked, SCAN)))
    plain = directory / "plain.txt"
    plain.write_text("không có chữ ký")
    return {"good": good, "revoked": revoked, "revoked_sig": other_sig, "plain": plain, "dir": directory}


def trust_args(pki):
    args = ["--trust-anchor", str(pki.root.cert_path), "--cert", str(pki.ca.cert_path)]
    for crl in pki.crl_paths:
        args += ["--crl", str(crl)]
    return args


def test_valid_file_exits_zero_with_the_json_report(pki, files, capsys):
    code = main(["verify", "--json", *trust_args(pki), str(files["good"])])
    out = capsys.readouterr().out
    reports = json.loads(out)
    assert code == 0
    assert [r["verdict"] for r in reports] == ["valid"]
    assert reports[0]["file"] == "giay-to.png"
    assert reports[0]["format"] == "cades"
    assert reports[0]["originals_check_required"] is False


def test_explicit_detached_signature_and_exit_one_when_not_valid(pki, files, capsys):
    code = main(["verify", "--json", *trust_args(pki), "--detached", str(files["revoked_sig"]), str(files["revoked"])])
    reports = json.loads(capsys.readouterr().out)
    assert code == 1
    assert reports[0]["verdict"] == "revoked"


def test_many_files_in_parallel_keep_their_order(pki, files, capsys):
    paths = [files["good"], files["plain"], files["good"], files["good"]]
    code = main(["verify", "--json", "--workers", "2", *trust_args(pki), *map(str, paths)])
    reports = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [r["verdict"] for r in reports] == ["valid", "unsigned", "valid", "valid"]


def test_the_table_shows_bracketed_file_names_as_is(pki, files, capsys, tmp_path):
    named = tmp_path / "don [ban sao] [b].txt"
    named.write_bytes(files["plain"].read_bytes())
    code = main(["verify", *trust_args(pki), str(named)])
    out = "".join(capsys.readouterr().out.split())  # the table may wrap a long path
    assert code == 1
    assert "don[bansao][b].txt" in out


def test_table_in_vietnamese(pki, files, capsys):
    code = main(["verify", "--lang", "vi", *trust_args(pki), str(files["good"]), str(files["plain"])])
    out = capsys.readouterr().out
    assert code == 1
    assert "hợp lệ" in out
    assert "không có chữ ký" in out.lower()
    assert "Nguyễn Văn A" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["verify", "--trust-anchor", "/nonexistent/root.pem", "x"],
            "trust anchor /nonexistent/root.pem: no such file",
        ),
        (["verify", "/nonexistent.pdf", "--trust-anchor", "{root}"], "file /nonexistent.pdf: no such file"),
        (["verify", "{plain}"], "no trust anchor"),
        (["verify", "--trust-anchor", "{plain}", "{plain}"], "not a readable certificate"),
        (["verify", "--detached", "{plain}", "--trust-anchor", "{root}", "{plain}", "{plain}"], "exactly one FILE"),
        (["verify", "--lang", "fr", "{plain}"], "invalid choice"),
        (["verify", "--workers", "0", "{plain}"], "argument --workers: must be a whole number of at least 1 (got '0')"),
        (["verify", "--workers", "-2", "{plain}"], "argument --workers: must be a whole number of at least 1"),
        (["verify", "--workers", "two", "{plain}"], "argument --workers: must be a whole number of at least 1"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_are_one_line_and_exit_two(pki, files, capsys, args, message):
    args = [a.format(root=pki.root.cert_path, plain=files["plain"]) for a in args]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("dvc-gateway: error: ")


def test_console_script_runs_as_a_process(pki, files):
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "verify", "--json", *trust_args(pki), str(files["good"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["verdict"] == "valid"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "verify", str(files["plain"])], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_version_and_help():
    proc = subprocess.run([sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("dvc-gateway ")
    proc = subprocess.run([sys.executable, "-m", "gateway", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "verify" in proc.stdout


def test_detached_signature_listed_beside_its_file_is_not_a_second_document(pki, files, capsys):
    sig = files["dir"] / "giay-to.png.p7s"
    code = main(["verify", "--json", *trust_args(pki), str(files["good"]), str(sig)])
    reports = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [r["file"] for r in reports] == ["giay-to.png"]


def test_online_revocation_from_configuration_and_offline_override(pki, pki_server, files, tmp_path, capsys):
    config = tmp_path / "gateway.toml"
    config.write_text(
        "[signing]\n"
        f"trust_anchors = ['{pki.root.cert_path}']\n"
        f"intermediates = ['{pki.ca.cert_path}']\n"
        "online_revocation = true\n"
        "timeout_seconds = 5\n"
    )
    before = pki_server.hits.get("/ocsp", 0)
    code = main(["verify", "--json", "--config", str(config), str(files["good"])])
    reports = json.loads(capsys.readouterr().out)
    assert (code, reports[0]["verdict"]) == (0, "valid")
    assert reports[0]["signatures"][0]["revocation"] == "good"
    assert pki_server.hits.get("/ocsp", 0) > before

    code = main(["verify", "--json", "--offline", "--config", str(config), str(files["good"])])
    reports = json.loads(capsys.readouterr().out)
    assert (code, reports[0]["verdict"]) == (1, "untrusted")


def _negative_serial_identity() -> tuple[bytes, str]:
    """A self-signed RSA key and certificate (PEM) whose serial number is negative, as some old CAs issued them
    (RFC 5280 forbids it; cryptography loads it with a deprecation warning). Built with asn1crypto: cryptography's
    own builder refuses such a serial."""
    import base64
    from datetime import UTC, datetime

    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    name = asn1_x509.Name.build({"common_name": "Serial am"})
    tbs = asn1_x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": -12345,
            "signature": {"algorithm": "sha256_rsa"},
            "issuer": name,
            "validity": {
                "not_before": asn1_x509.Time({"utc_time": datetime(2025, 1, 1, tzinfo=UTC)}),
                "not_after": asn1_x509.Time({"utc_time": datetime(2045, 1, 1, tzinfo=UTC)}),
            },
            "subject": name,
            "subject_public_key_info": asn1_keys.PublicKeyInfo.load(public),
        }
    )
    certificate = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": {"algorithm": "sha256_rsa"},
            "signature_value": key.sign(tbs.dump(), padding.PKCS1v15(), hashes.SHA256()),
        }
    )
    pem = (
        "-----BEGIN CERTIFICATE-----\n"
        + base64.encodebytes(certificate.dump()).decode()
        + "-----END CERTIFICATE-----\n"
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private, pem


def test_a_library_warning_does_not_reach_the_user(tmp_path):
    """An XML document signed with a certificate whose serial number is negative: cryptography warns while loading it
    (twice: the gateway and signxml each load it); the report is the output, and stderr stays empty."""
    import warnings

    from lxml import etree
    from signxml import XMLSigner

    key, pem = _negative_serial_identity()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same warning, while signing here
        signed = XMLSigner().sign(etree.fromstring(b"<HoSo><MaHoSo>1</MaHoSo></HoSo>"), key=key, cert=[pem])
    (tmp_path / "ho-so.xml").write_bytes(etree.tostring(signed, xml_declaration=True))
    (tmp_path / "root.pem").write_text(pem)
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "verify", "--json", "--trust-anchor", "root.pem", "ho-so.xml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    [report] = json.loads(proc.stdout)
    assert (report["format"], report["verdict"]) == ("xmldsig", "valid")
