"""Vietnamese identifiers in certificate subjects."""

from asn1crypto import x509

from signing.identity import parse_identifiers, signer_from_certificate


def test_known_prefixes_map_to_names_and_unknown_are_kept():
    assert parse_identifiers(["MST:0101234567", "CCCD:001099012345", "CMND:012345678", "HC:B1234567"]) == {
        "tax_code": "0101234567",
        "citizen_id": "001099012345",
        "id_card": "012345678",
        "passport": "B1234567",
    }
    assert parse_identifiers(["BHXH:0123"]) == {"BHXH": "0123"}


def test_prefix_is_case_and_space_tolerant_and_first_value_wins():
    assert parse_identifiers(["mst: 0101234567-001", "MST:999"]) == {"tax_code": "0101234567-001"}


def test_values_without_prefix_are_not_identifiers():
    assert parse_identifiers(["0101234567", ""]) == {}


def test_signer_from_certificate_reads_uid_and_serial_number():
    name = x509.Name.build(
        {
            "country_name": "VN",
            "organization_name": "Công ty TNHH Thử nghiệm",
            "common_name": "Nguyễn Văn A",
            "user_id": "MST:0101234567",
            "serial_number": "CCCD:001099012345",
        }
    )
    cert = x509.Certificate({"tbs_certificate": {"subject": name}})
    signer = signer_from_certificate(cert)
    assert signer.common_name == "Nguyễn Văn A"
    assert signer.organization == "Công ty TNHH Thử nghiệm"
    assert signer.serial_number == "CCCD:001099012345"
    assert signer.identifiers == {"tax_code": "0101234567", "citizen_id": "001099012345"}
