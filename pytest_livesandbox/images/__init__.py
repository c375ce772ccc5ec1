"""Images built from source for ``--sandbox-build`` (shared by the docker and kube backends).

    pytest --sandbox=docker --sandbox-build app=examples/demo_app
    pytest --sandbox=kube --sandbox-build backend=. --sandbox-registry=127.0.0.1:5000/livesandbox

:mod:`.context` names a build by its content (the tag), :mod:`.engine` builds and pushes through
the Docker engine, :mod:`.registry` asks a registry whether it already holds a tag, and
:mod:`.pipeline` puts them together: an unchanged tree is neither built nor pushed.
"""
