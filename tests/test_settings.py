import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import SHARED, clean_environ, one_line_error, skip_without

from rdft.errors import RdftError
from rdft.settings import load_settings

TEMPLATE = Path(__file__).parent / "fixtures" / "rdagent-template.env"


@pytest.fixture
def no_settings_env(monkeypatch):
    """Drop the developer's own rdft/RD-Agent variables for the duration of a test."""
    for key in set(os.environ) - set(clean_environ()):
        monkeypatch.delenv(key)


def test_fixture_is_the_guides_template_verbatim():
    guide = SHARED / "reference" / "ft-scenario-guide.md"
    if not guide.is_file():
        skip_without(f"{guide} is absent (it exists in CI and on the team's machines)")
    block = re.search(r"### 2\. \.env 配置文件.*?```bash\n(.*?)```", guide.read_text(encoding="utf-8"), re.S)
    assert block.group(1) == TEMPLATE.read_text(encoding="utf-8")


def test_guides_env_template_loads_unchanged(no_settings_env):
    settings = load_settings(TEMPLATE)
    assert settings.chat_model == "gpt-5.2"
    assert settings.chat_temperature == 1.0
    assert settings.chat_stream is True
    assert settings.openai_api_key.get_secret_value() == "sk-xxx"
    assert settings.openai_api_base == "http://your-api-endpoint"
    assert settings.max_retry == 12000
    assert settings.retry_wait_seconds == 5
    assert settings.chat_frequency_penalty == 0.1
    assert settings.ft_file_path == Path("/path/to/your/finetune/workspace")
    assert settings.ft_coder_costeer_env_type == "conda"
    assert settings.ft_api_max_workers == 1000
    assert settings.ft_strong_models == ["gpt-5", "gpt-5.1"]
    assert settings.ft_weak_models == ["gpt-4o-mini"]
    assert settings.ft_target_benchmark == "aime25"
    assert settings.ft_user_target_scenario.startswith("I need to enhance")
    assert settings.ft_data_processing_timeout == 28800
    assert settings.ft_judge_model is None  # commented out in the template
    assert settings.reasoning_think_rm is True
    assert settings.hf_token.get_secret_value() == "hf_xxx"
    assert "{time:YYYY-MM-DD" in settings.log_format_console
    # Secrets never show in a repr.
    assert "sk-xxx" not in repr(settings) and "hf_xxx" not in repr(settings)
    assert settings.unknown_keys() == []
    assert set(settings.ignored_in_use()) == {
        "BACKEND",
        "EMBEDDING_MODEL",
        "EMBEDDING_USE_AZURE",
        "DUMP_EMBEDDING_CACHE",
        "USE_EMBEDDING_CACHE",
        "MULTI_PROC_N",
        "STEP_SEMAPHORE",
        "FT_DOCKER_ENABLE_CACHE",
        "FT_UPDATE_LLAMA_FACTORY",
        "LOG_FORMAT_CONSOLE",
    }


def test_environment_overrides_env_file(no_settings_env, monkeypatch):
    monkeypatch.setenv("FT_API_MAX_WORKERS", "4")
    assert load_settings(TEMPLATE).ft_api_max_workers == 4


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("FT_API_MAX_WORKERS=abc", "FT_API_MAX_WORKERS"),
        ("FT_API_MAX_WORKERS=0", "FT_API_MAX_WORKERS"),
        ("CHAT_TEMPERATURE=hot", "CHAT_TEMPERATURE"),
        ("FT_STRONG_MODELS=[gpt-5", "FT_STRONG_MODELS"),
        ("FT_Coder_CoSTEER_env_type=kubernetes", "FT_Coder_CoSTEER_env_type"),
    ],
)
def test_bad_value_is_one_line_naming_the_key(no_settings_env, tmp_path, line, key):
    env_file = tmp_path / ".env"
    env_file.write_text(line + "\n")
    with pytest.raises(RdftError) as caught:
        load_settings(env_file)
    message = str(caught.value)
    assert "\n" not in message
    assert f"setting {key}" in message and "fix it in .env" in message


def test_docker_gets_the_docker_less_message(no_settings_env, tmp_path):
    (tmp_path / ".env").write_text("FT_Coder_CoSTEER_env_type=docker\n")
    with pytest.raises(RdftError, match="rdft is Docker-less; set FT_Coder_CoSTEER_env_type to conda or venv"):
        load_settings(tmp_path / ".env")


def test_model_pools_take_json_or_commas(no_settings_env, monkeypatch):
    monkeypatch.setenv("FT_STRONG_MODELS", "gpt-5, o3")
    monkeypatch.setenv("FT_WEAK_MODELS", '["gpt-4o-mini"]')
    settings = load_settings(None)
    assert settings.ft_strong_models == ["gpt-5", "o3"]
    assert settings.ft_weak_models == ["gpt-4o-mini"]


def test_unknown_key_gets_closest_name(no_settings_env, tmp_path):
    (tmp_path / ".env").write_text("FT_API_MAX_WORKER=3\n")
    assert load_settings(tmp_path / ".env").unknown_keys() == ["FT_API_MAX_WORKER (did you mean FT_API_MAX_WORKERS?)"]


def test_cli_bad_setting_exits_nonzero_with_one_line(rdft):
    (rdft.workdir / ".env").write_text("FT_API_MAX_WORKERS=abc\n")
    result = rdft("doctor")
    line = one_line_error(result)
    # the setting and its line, never the value (a value in the wrong setting may be a key)
    assert "setting FT_API_MAX_WORKERS (.env line 1) is invalid" in line and "valid integer" in line
    assert "abc" not in line


def test_cli_docker_backend_refused(rdft):
    result = rdft("env", "list", env={"FT_Coder_CoSTEER_env_type": "docker"})
    assert "Docker-less" in one_line_error(result)


def test_cli_reports_ignored_settings_once(rdft):
    shutil.copy(TEMPLATE, rdft.workdir / ".env")
    # The template points FT_FILE_PATH at a placeholder; the environment overrides it.
    result = rdft("env", "list")
    assert result.returncode == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "ignoring RD-Agent-only settings" in line]
    assert len(notes) == 1
    assert "BACKEND" in notes[0] and "FT_UPDATE_LLAMA_FACTORY" in notes[0]


def test_every_setting_is_read_or_reported_as_ignored():
    """A setting rdft accepts is either read somewhere in rdft (as an attribute of the settings)
    or listed as ignored with its reason (which `rdft doctor` shows); never silently dead."""
    from rdft.settings import IGNORED, Settings

    source = "\n".join(path.read_text() for path in (Path(__file__).parents[1] / "rdft").rglob("*.py"))
    for name in Settings.model_fields:
        if name.upper() in IGNORED:
            assert IGNORED[name.upper()], name
            continue
        assert re.search(rf"\.{name}\b", source), f"setting {name.upper()} is accepted but never read"


def test_target_needs_a_benchmark(rdft):
    message = one_line_error(rdft("run", "--base-model", "tiny:llama", "--target", "answer patent questions"))
    assert "a target needs a benchmark that scores it: give --benchmark" in message
    environ = {"FT_USER_TARGET_SCENARIO": "answer patent questions"}
    assert "a target needs a benchmark" in one_line_error(rdft("run", "--base-model", "tiny:llama", env=environ))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "OPENAI_API_KEY sk-LEAKTEST-0123456789abcdef\n",
            ".env line 1 is not KEY=VALUE (it starts with OPENAI_API_KEY)",
        ),
        ('X=1\nHF_TOKEN="hf_LEAKTEST_unterminated\n', ".env line 2 is not KEY=VALUE (it starts with HF_TOKEN)"),
        ("MAX_RETRY=sk-LEAKTEST-a1b2c3d4e5f6g7h8i9j0\n", "setting MAX_RETRY (.env line 1) is invalid"),
        ("FT_API_MAX_WORKERS=hf_LEAKTEST_token\n", "setting FT_API_MAX_WORKERS (.env line 1) is invalid"),
    ],
)
def test_a_bad_setting_never_echoes_its_value(no_settings_env, tmp_path, text, says):
    """A key pasted on the wrong line, or into the wrong setting, is named by its line and its
    setting, never shown (issue 27: three cases printed the key)."""
    env_file = tmp_path / ".env"
    env_file.write_text(text)
    with pytest.raises(RdftError) as caught:
        load_settings(env_file)
    message = str(caught.value)
    assert says in message and "LEAKTEST" not in message, message
