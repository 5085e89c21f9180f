"""Drives Latchkey's /mcp with the official MCP Python SDK (PyPI `mcp`, pinned in
scripts/install-test-peers). Request on stdin as JSON: {"url", "token", "calls": [{"name",
"arguments"}]}; prints {"initialized", "tools", "results"} as JSON, or {"error"}.
Exit 3 when the SDK is not installed."""

import asyncio
import json
import sys

try:
    import httpx2 as httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
except ImportError as e:  # pragma: no cover
    print(json.dumps({"error": f"not installed: {e}"}))
    sys.exit(3)


async def run(req):
    headers = {}
    if req.get("token"):
        headers["Authorization"] = f"Bearer {req['token']}"
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(req["url"], http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                results = []
                for c in req.get("calls", []):
                    r = await session.call_tool(c["name"], c.get("arguments") or {})
                    results.append(r.model_dump(mode="json", by_alias=True, exclude_none=True))
                return {
                    "initialized": init.model_dump(mode="json", by_alias=True, exclude_none=True),
                    "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools.tools],
                    "results": results,
                }


def main():
    req = json.load(sys.stdin)
    try:
        out = asyncio.run(run(req))
    except BaseException as e:  # the SDK raises exception groups from its task group
        out = {"error": f"{type(e).__name__}: {e!r}"}
    print(json.dumps(out))


main()
