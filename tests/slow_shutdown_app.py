"""An app whose shutdown takes long: a second SIGINT must not wait for it."""

import asyncio

from engine import App

app = App()


@app.hook("stop")
async def linger(worker):
    await asyncio.sleep(30)
