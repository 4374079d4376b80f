import pytest

from shared.config import ConfigError, load_settings


def test_defaults_and_environment():
    s = load_settings(env={"TIERLINE_PORT": "9000", "TIERLINE_LOG_JSON": "false"})
    assert s.port == 9000 and s.log_json is False and s.bus_url == "memory://"
    assert s.domain["priorities"]["matrix"]["high"]["high"] == "P1"
    assert s.database_for("sla").endswith("sla.db")


@pytest.mark.parametrize("name,value,words", [
    ("TIERLINE_PORT", "eighty", "TIERLINE_PORT"),
    ("TIERLINE_PORT", "-1", "must be positive"),
    ("TIERLINE_BUS_URL", "localhost", "TIERLINE_BUS_URL"),
    ("TIERLINE_LOG_JSON", "maybe", "TIERLINE_LOG_JSON"),
    ("TIERLINE_CONFIG", "/nonexistent.yaml", "file not found"),
])
def test_bad_setting_names_itself(name, value, words):
    with pytest.raises(ConfigError) as exc:
        load_settings(env={name: value})
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_secrets_are_redacted():
    s = load_settings(env={"TIERLINE_BUS_URL": "amqp://user:s3cret@rabbit:5672/%2F",
                           "TIERLINE_TRACKER_TOKEN": "tok-123"})
    text = str(s.redacted())
    assert "s3cret" not in text and "tok-123" not in text and "rabbit" in text


def test_cli_stops_with_one_line(capsys, monkeypatch):
    from services.cli import main
    monkeypatch.setenv("TIERLINE_PORT", "abc")
    assert main(["serve", "intake"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TIERLINE_PORT" in err[0]
