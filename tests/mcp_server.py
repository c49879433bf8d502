"""An MCP server built with the SDK, for the ways a server goes wrong: run as
`python tests/mcp_server.py [--http PORT [--sse]] [--tools N] [--die "message"] [--garbage]`.

Its tools: echo (the text back), fail (a result marked isError), image (a PNG part and a
line of text), huge (a result of `size` characters), crash (the process exits mid-call),
hang (never answers), garbage (writes a line that is not JSON-RPC, then never answers),
env (the value of an environment variable, or "unset"), where (its working directory).
--tools N adds N more (many_0 ...), --die prints the message on stderr and exits at start.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time

# A 1x1 PNG.
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwAB"
                         "BAEAwS2OUAAAAABJRU5ErkJggg==")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=0)
    parser.add_argument("--sse", action="store_true", help="with --http: the older SSE transport")
    parser.add_argument("--tools", type=int, default=0)
    parser.add_argument("--die", default="")
    parser.add_argument("--garbage", action="store_true")
    options = parser.parse_args()
    if options.die:
        print(options.die, file=sys.stderr, flush=True)
        sys.exit(3)
    if options.garbage:
        return speak_garbage()

    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.mcpserver.utilities.types import Image
    from mcp_types import TextContent

    server = MCPServer("faults")

    @server.tool(description="Say the text back.")
    def echo(text: str) -> str:
        return f"echo: {text}"

    @server.tool(description="Fail, as a result marked as an error.")
    def fail(reason: str = "it went wrong") -> str:
        raise ToolError(reason)

    @server.tool(description="An image and a line of text.")
    def image():  # type: ignore[no-untyped-def]
        picture = Image(data=PIXEL, format="png").to_image_content()
        return [picture, TextContent(type="text", text="a red pixel")]

    @server.tool(description="A long text.")
    def huge(size: int = 1_000_000) -> str:
        line = "0123456789" * 9 + "\n"
        return (line * (size // len(line) + 1))[:size]

    @server.tool(description="Exit in the middle of the call.")
    def crash() -> str:
        print("crashing as asked", file=sys.stderr, flush=True)
        os._exit(1)

    @server.tool(description="Never answer.")
    def hang() -> str:
        time.sleep(3600)
        return "late"

    @server.tool(description="Write a line that is not JSON-RPC, then never answer.")
    def garbage() -> str:
        os.write(1, b"this is not json\n")
        time.sleep(3600)
        return "late"

    @server.tool(description="The value of an environment variable.")
    def env(name: str) -> str:
        return os.environ.get(name, "unset")

    @server.tool(description="The working directory.")
    def where() -> str:
        return os.getcwd()

    for number in range(options.tools):
        server.add_tool(lambda number=number: f"many {number}", name=f"many_{number}",
                        description=f"Tool number {number}.")

    if options.http and options.sse:
        server.run("sse", host="127.0.0.1", port=options.http)
    elif options.http:
        server.run("streamable-http", host="127.0.0.1", port=options.http)
    else:
        server.run()


def speak_garbage() -> None:
    """Without the SDK: a server that starts as the protocol says, lists one tool, and
    answers its call with a line that is not JSON-RPC."""
    import json

    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message:
            continue  # a notification
        if message["method"] == "initialize":
            result = {"protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "garbage", "version": "1"}}
        elif message["method"] == "tools/list":
            result = {"tools": [{"name": "say", "description": "Say something.",
                                 "inputSchema": {"type": "object", "properties": {}}}]}
        elif message["method"] == "tools/call":
            sys.stdout.write("{this is not json\n")
            sys.stdout.flush()
            continue
        else:
            result = {}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
