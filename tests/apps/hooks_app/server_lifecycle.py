"""Prints every lifecycle hook call; the async ones prove they are awaited."""
import asyncio


def on_server_loaded(server_context):
    print("HOOK server-loaded", flush=True)


def on_server_unloaded(server_context):
    print("HOOK server-unloaded", flush=True)


async def on_session_created(session_context):
    await asyncio.sleep(0)
    print(f"HOOK session-created {session_context.id}", flush=True)


async def on_session_destroyed(session_context):
    await asyncio.sleep(0)
    print(f"HOOK session-destroyed {session_context.id}", flush=True)
