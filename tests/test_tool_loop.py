"""The tool loop through the real client and the fake server: every delta shape servers send,
the history that goes back, refusals, the round limit, the repeat guard, Ctrl-C, trimming."""

from __future__ import annotations

import json

import pytest

from chatcli import errors
from chatcli.chat import run_turn
from chatcli.conversation import ASSISTANT, USER, Conversation, Message, ToolCall, ToolResult, build_window
from chatcli.tools import Context, Stopped, Tool
from chatcli.tools.box import Decision, ToolBox, cut
from tests.fake_server import CALL_SHAPES, Reply
from tests.test_chat import Collect, setup

WEATHER = {"id": "call_w", "name": "get_weather", "arguments": json.dumps({"city": "北京", "unit": "c"})}
TIME = {"id": "call_t", "name": "get_time", "arguments": json.dumps({"zone": "Asia/Shanghai"})}


def weather_box(ran: list | None = None, answer: str = "yes", **kwargs) -> ToolBox:
    def get_weather(args, ctx):
        if ran is not None:
            ran.append(("get_weather", args))
        return f"sunny in {args.get('city')}"

    def get_time(args, ctx):
        if ran is not None:
            ran.append(("get_time", args))
        return "12:00"

    schema = {"type": "object", "properties": {}}
    tools = [Tool("get_weather", "the weather", schema, get_weather, "network"),
             Tool("get_time", "the time", schema, get_time, "read")]
    return ToolBox(tools, approve=lambda tool, call, args: Decision(answer), context=Context(cwd="."),
                   **kwargs)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("shape", CALL_SHAPES)
def test_every_streamed_shape_of_two_calls_is_put_together(server, shape, stream):
    settings, client = setup(server)
    server.queue(Reply(text="", finish_reason="tool_calls", tool_calls=[WEATHER, TIME], call_shape=shape),
                 Reply(text="Sunny, and it is noon."))
    ran: list = []
    result = run_turn(Conversation(), "weather and time?", client=client, settings=settings, sink=Collect(),
                      tools=weather_box(ran), stream=stream)
    assert ran == [("get_weather", {"city": "北京", "unit": "c"}), ("get_time", {"zone": "Asia/Shanghai"})]
    assert result.reply.content == "Sunny, and it is noon." and result.rounds == 1
    sent = server.chat_requests[1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    calls = sent[1]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [json.loads(WEATHER["arguments"]),
                                                                       json.loads(TIME["arguments"])]
    ids = [c["id"] for c in calls]
    assert len(set(ids)) == 2 and all(ids)  # made up where the server sent none, never shared
    assert [(m["tool_call_id"], m["content"]) for m in sent[2:]] == [(ids[0], "sunny in 北京"),
                                                                     (ids[1], "12:00")]
    assert server.chat_requests[0]["tools"][0]["function"]["name"] == "get_weather"
    assert server.chat_requests[0]["tool_choice"] == "auto"


def test_a_server_that_says_stop_with_calls_still_gets_them_run(server):
    settings, client = setup(server)
    server.queue(Reply(text="", finish_reason="stop", tool_calls=[TIME]), Reply(text="noon"))
    result = run_turn(Conversation(), "time?", client=client, settings=settings, sink=Collect(),
                      tools=weather_box())
    assert result.reply.content == "noon"
    first = result.replies[0]
    assert first.finish_reason == "tool_calls" and first.tool_calls[0].result.content == "12:00"


def test_empty_arguments_mean_an_empty_object_and_bad_json_is_told_to_the_model(server):
    settings, client = setup(server)
    server.queue(Reply(text="", tool_calls=[{**TIME, "arguments": ""},
                                            {**WEATHER, "arguments": '{"city": "Par'}]),
                 Reply(text="done"))
    ran: list = []
    run_turn(Conversation(), "go", client=client, settings=settings, sink=Collect(), tools=weather_box(ran))
    assert ran == [("get_time", {})]
    tool_messages = server.chat_requests[1]["messages"][2:]
    assert json.loads(server.chat_requests[1]["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {}
    assert tool_messages[1]["content"].startswith("error: the arguments are not valid JSON")


def test_a_refused_call_is_told_as_refused_and_nothing_runs(server):
    settings, client = setup(server)
    server.queue(Reply(text="", tool_calls=[WEATHER]), Reply(text="ok, not checking"))
    ran: list = []
    run_turn(Conversation(), "weather?", client=client, settings=settings, sink=Collect(),
             tools=weather_box(ran, answer="no"))
    assert ran == []
    assert server.chat_requests[1]["messages"][2]["content"] == "refused: the user did not allow this call"


def test_an_unknown_tool_is_an_error_result_not_a_crash(server):
    settings, client = setup(server)
    server.queue(Reply(text="", tool_calls=[{"id": "x", "name": "rm_rf", "arguments": "{}"}]),
                 Reply(text="ok"))
    run_turn(Conversation(), "go", client=client, settings=settings, sink=Collect(), tools=weather_box())
    assert "there is no tool named 'rm_rf'" in server.chat_requests[1]["messages"][2]["content"]


def test_the_round_limit_stops_the_loop_with_every_call_answered(server):
    settings, client = setup(server, max_tool_rounds=2)
    server.responder = lambda body: Reply(
        text="", tool_calls=[{**TIME, "arguments": json.dumps({"n": len(body["messages"])})}])
    conversation = Conversation()
    result = run_turn(conversation, "loop", client=client, settings=settings, sink=Collect(),
                      tools=weather_box())
    assert len(server.chat_requests) == 3 and result.rounds == 2
    assert "stopped after 2 rounds of tool calls (max_tool_rounds = 2)" in result.notice
    last = conversation.messages[-1]
    assert last.tool_calls[0].result.status == "not run"
    assert len(conversation.messages) == 4  # the question and three replies: all kept


def test_the_same_call_three_times_is_stopped(server):
    settings, client = setup(server)
    server.responder = lambda body: Reply(text="", tool_calls=[TIME])
    result = run_turn(Conversation(), "loop", client=client, settings=settings, sink=Collect(),
                      tools=weather_box())
    assert len(server.chat_requests) == 3 and result.rounds == 2
    assert "the same call (get_time with the same arguments) 3 times" in result.notice


def test_calls_with_no_tools_enabled_are_answered_as_not_run(server):
    settings, client = setup(server)
    server.queue(Reply(text="let me check", tool_calls=[TIME]))
    conversation = Conversation()
    result = run_turn(conversation, "time?", client=client, settings=settings, sink=Collect())
    assert "none are enabled" in result.notice and len(server.chat_requests) == 1
    assert "tools" not in server.chat_requests[0]
    assert conversation.messages[-1].tool_calls[0].result.status == "not run"


def test_ctrl_c_while_a_tool_runs_keeps_its_output_and_ends_the_turn(server):
    settings, client = setup(server)

    def slow(args, ctx):
        raise Stopped("line 1\nline 2")

    box = ToolBox([Tool("slow", "slow", {"type": "object"}, slow, "run")],
                  approve=lambda *a: Decision("yes"), context=Context(cwd="."))
    server.queue(Reply(text="", tool_calls=[{"id": "a", "name": "slow", "arguments": "{}"},
                                            {"id": "b", "name": "slow", "arguments": "{}"}]))
    conversation = Conversation()
    with pytest.raises(errors.Interrupted):
        run_turn(conversation, "go", client=client, settings=settings, sink=Collect(), tools=box)
    first, second = conversation.messages[-1].tool_calls
    assert first.result.status == "interrupted" and "line 2" in first.result.content
    assert second.result.status == "not run"
    assert len(server.chat_requests) == 1  # nothing sent after the user stopped it


def test_thinking_goes_back_inside_a_tool_exchange_only(server):
    settings, client = setup(server)
    server.queue(Reply(text="", reasoning="I need the time.", tool_calls=[TIME]),
                 Reply(text="noon", reasoning="Now I know."))
    conversation = Conversation()
    run_turn(conversation, "time?", client=client, settings=settings, sink=Collect(), tools=weather_box())
    assert server.chat_requests[1]["messages"][1]["reasoning_content"] == "I need the time."
    server.queue(Reply(text="bye"))
    run_turn(conversation, "thanks", client=client, settings=settings, sink=Collect(), tools=weather_box())
    final = server.chat_requests[2]["messages"][3]
    assert final == {"role": "assistant", "content": "noon"}  # an ordinary reply: no thinking resent


def test_trimming_drops_a_call_and_its_results_together():
    call = ToolCall("c1", "read_file", '{"path": "a"}', ToolResult("x" * 4000))
    history = [Message(USER, "old question"), Message(ASSISTANT, "", tool_calls=(call,)),
               Message(ASSISTANT, "old answer"), Message(USER, "new question")]
    window = build_window(None, history, budget=300)
    assert [m.content for m in window.messages] == ["new question"]
    sent = build_window(None, history, budget=100_000).to_api()
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]


def test_long_output_is_cut_to_head_and_tail_and_kept_whole():
    output = "\n".join(f"line {n}" for n in range(20_000))
    short = cut(output, 500)
    assert short.startswith("line 0\n") and short.endswith("line 19999")
    assert "characters (" in short and "cut here" in short and len(short) < len(output) // 10
    box = ToolBox([Tool("big", "big", {"type": "object"}, lambda a, c: output, "read")],
                  approve=lambda *a: Decision("yes"), context=Context(cwd="."), budget_tokens=500)
    result = box.run(ToolCall("1", "big", "{}"))
    assert result.content == short and result.output == output and result.whole == output


def test_slash_tools_turns_tools_on_and_off_and_tool_output_shows_the_whole_output(server, tmp_path):
    from tests.test_repl import CTRL_D, ENTER, Harness

    harness = Harness(server, tmp_path)
    box = weather_box(budget_tokens=100)
    catalog = dict(box.tools)
    box.tools.clear()
    harness.session.tools, harness.session.catalog = box, catalog
    long = "\n".join(f"row {n}" for n in range(500))
    box_tools = catalog["get_time"]
    catalog["get_time"] = Tool("get_time", "the time", box_tools.parameters, lambda a, c: long, "read")
    server.queue(Reply(text="no tools yet"), Reply(text="", tool_calls=[TIME]), Reply(text="it is late"))
    harness.run(f"hi{ENTER}/tools get_time{ENTER}time?{ENTER}/tools{ENTER}/history{ENTER}/tool-output{ENTER}"
                f"{CTRL_D}")
    out = harness.out.getvalue()
    assert "tools" not in server.chat_requests[0]
    assert [t["function"]["name"] for t in server.chat_requests[1]["tools"]] == ["get_time"]
    assert "get_time is offered now" in out
    assert "get_time #1 ok" in out  # /history names the call by its number
    assert "row 499" in out and "row 250" in out  # the whole output, though the model read it cut
    assert "row 250" not in server.chat_requests[2]["messages"][-1]["content"]
    listed = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("get_")}
    assert listed == {"get_time": "on", "get_weather": "off"}


def test_a_role_chooses_its_tools_and_leaving_it_puts_them_back(server, tmp_path):
    from tests.test_repl import Harness

    harness = Harness(server, tmp_path, roles={"coder": {"tools": ["get_weather"]}},
                      tools={"enabled": ["get_time"]})
    box = weather_box()
    harness.session.tools, harness.session.catalog = box, dict(box.tools)
    box.tools.pop("get_weather")
    harness.session.set_role("coder")
    assert list(box.tools) == ["get_weather"]
    harness.session.set_role(None)
    assert list(box.tools) == ["get_time"]


def test_cmd_offers_no_tools_whatever_the_config_enables(endpoint, run, tmp_path):
    config = tmp_path / "config" / "config.toml"
    config.parent.mkdir()
    config.write_text('[tools]\nenabled = ["run_command"]\n')
    endpoint.queue(Reply(text="ls -la"))
    result = run("cmd", "list the files")
    assert result.code == 0 and result.stdout == "ls -la\n"
    assert "tools" not in endpoint.chat_requests[0]


def test_ctrl_c_in_a_tool_that_runs_no_program_ends_its_lines_too():
    ended: list = []

    def reading(args, ctx):
        raise KeyboardInterrupt

    box = ToolBox([Tool("slow_read", "reads", {"type": "object"}, reading, "read")],
                  pre_approved=["slow_read"], context=Context(cwd="."),
                  progress=lambda tool, call, result: ended.append(result))
    with pytest.raises(KeyboardInterrupt):
        box.run(ToolCall("1", "slow_read", "{}"))
    assert ended[0] is None and ended[1].status == "interrupted"  # started, then ended: no ticker left
    assert box.stopped().content == "stopped by the user"
