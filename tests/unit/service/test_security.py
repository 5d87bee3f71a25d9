import pytest

from inference_service.api.security import key_checker, owner_of
from inference_service.settings import ServiceSettings


def test_keys_name_their_clients() -> None:
    check = key_checker({"k1": "alice", "k2": "bob"})
    assert check("k1") == {"sub": "alice"}
    assert check("k2") == {"sub": "bob"}
    assert check("k3") is None
    assert check("") is None


def test_without_keys_everyone_is_anonymous() -> None:
    assert owner_of(None) == "anonymous"
    assert owner_of("alice") == "alice"


def test_api_keys_setting_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "k1:alice, k2:bob")
    assert ServiceSettings().clients_by_key() == {"k1": "alice", "k2": "bob"}
    monkeypatch.setenv("API_KEYS", "")
    assert ServiceSettings().clients_by_key() == {}
    monkeypatch.setenv("API_KEYS", "justakey")
    with pytest.raises(ValueError, match="API_KEYS"):
        ServiceSettings().clients_by_key()
