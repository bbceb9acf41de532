"""The sample server behind the README's first command (the game grows here)."""

import os

from engine import App, Settings

app = App(settings=Settings(static_dir=os.path.join(os.path.dirname(__file__), "web")))


@app.procedure("echo")
def echo(socket, data):
    return data
