"""A recording stand-in for gcloud, docker and kubectl (run through the wrappers beside it).

Every call appends one JSON line, {"tool": ..., "argv": [...]}, to $STANDIN_LOG, then:
- fails (exit $STANDIN_FAIL_CODE, default 1) when the command line ("TOOL ARG ARG...") contains
  one of the `||`-separated substrings of $STANDIN_FAIL_ON;
- creates the file $STANDIN_TOUCH_FILE when it contains $STANDIN_TOUCH_ON for the
  $STANDIN_TOUCH_NTH-th time (default 1st); tests use this to turn a health endpoint unhealthy at a
  precise point of a deploy;
- answers the read-only queries the deploy script makes with canned output:
    gcloud run services describe ... --format=json   a Knative Service whose status.traffic has
        $STANDIN_PREVIOUS_REVISION at 100 % (or $STANDIN_TRAFFIC, a JSON list, verbatim), plus the
        tagged candidate revision once `gcloud run deploy --tag T` was called; status.url is
        $STANDIN_SERVICE_URL, the tag's url $STANDIN_CANDIDATE_URL. No previous revision: "not found".
    docker inspect --format {{.Config.Image}} NAME   $STANDIN_PREVIOUS_IMAGE, or "No such object".
    docker ANYTHING with $STANDIN_DOCKER_DAEMON=down  exit 1 and the real client's "Cannot connect
        to the Docker daemon" line on stderr (as `docker info`, `ps`, `inspect` do without a daemon).
    kubectl get deployment NAME -o jsonpath=...image  NAME's image in $STANDIN_IMAGES (a JSON object),
        else $STANDIN_PREVIOUS_IMAGE; `get ... -o name` prints deployment.apps/NAME unless NAME is
        in $STANDIN_MISSING (which also makes the image query fail).
Everything else succeeds quietly (docker run prints a container id).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(tool: str, argv: list[str]) -> int:
    line = " ".join([tool, *argv])
    log = os.environ.get("STANDIN_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"tool": tool, "argv": argv}) + "\n")
    state = Path(log).with_suffix(".state.json") if log else None
    touch_on = os.environ.get("STANDIN_TOUCH_ON")
    if touch_on and touch_on in line:
        seen = int(_load(state).get("touch_count", "0")) + 1
        _save(state, touch_count=str(seen))
        if seen >= int(os.environ.get("STANDIN_TOUCH_NTH", "1")):
            Path(os.environ["STANDIN_TOUCH_FILE"]).touch()
    for pattern in filter(None, os.environ.get("STANDIN_FAIL_ON", "").split("||")):
        if pattern in line:
            print(f"{tool} (stand-in): failing as told ({pattern!r})", file=sys.stderr)
            return int(os.environ.get("STANDIN_FAIL_CODE", "1"))
    return {"gcloud": gcloud, "docker": docker, "kubectl": kubectl}[tool](argv, state)


def _load(state: Path | None) -> dict[str, str]:
    if state is None or not state.exists():
        return {}
    data: dict[str, str] = json.loads(state.read_text())
    return data


def _save(state: Path | None, **values: str) -> None:
    if state is not None:
        state.write_text(json.dumps({**_load(state), **values}))


def gcloud(argv: list[str], state: Path | None) -> int:
    if argv[:3] == ["run", "services", "describe"]:
        previous = os.environ.get("STANDIN_PREVIOUS_REVISION")
        if not previous:
            print(f"ERROR: (gcloud.run.services.describe) Cannot find service [{argv[3]}]", file=sys.stderr)
            return 1
        traffic = json.loads(os.environ.get("STANDIN_TRAFFIC") or "null") or [
            {"revisionName": previous, "percent": 100}
        ]
        tag = _load(state).get("tag")
        if tag:
            traffic.append(
                {
                    "revisionName": os.environ.get("STANDIN_NEW_REVISION", f"{argv[3]}-00042-new"),
                    "percent": 0,
                    "tag": tag,
                    "url": os.environ.get("STANDIN_CANDIDATE_URL", ""),
                }
            )
        service = {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": argv[3]},
            "status": {"url": os.environ.get("STANDIN_SERVICE_URL", ""), "traffic": traffic},
        }
        print(json.dumps(service, indent=2))
        return 0
    if argv[:2] == ["run", "deploy"] and "--tag" in argv:
        _save(state, tag=argv[argv.index("--tag") + 1])
        print("Deploying container to Cloud Run service... Done.", file=sys.stderr)
    return 0


DAEMON_DOWN = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
)


def docker(argv: list[str], _: Path | None) -> int:
    if os.environ.get("STANDIN_DOCKER_DAEMON") == "down":
        if argv[:1] == ["info"]:
            print("Client:\n Version:    27.3.1\n Context:    default")
        print(DAEMON_DOWN, file=sys.stderr)
        return 1
    if argv[:1] == ["inspect"]:
        image = os.environ.get("STANDIN_PREVIOUS_IMAGE")
        if not image:
            print(f"Error: No such object: {argv[-1]}", file=sys.stderr)
            return 1
        print(image)
    elif argv[:1] == ["run"]:
        print("0123456789abcdef" * 4)
    return 0


def kubectl(argv: list[str], _: Path | None) -> int:
    if "get" in argv and "deployment" in argv:
        name = argv[argv.index("deployment") + 1]
        if name in os.environ.get("STANDIN_MISSING", "").split():
            print(f'Error from server (NotFound): deployments.apps "{name}" not found', file=sys.stderr)
            return 1
        output = argv[argv.index("-o") + 1] if "-o" in argv else ""
        if "image" in output:
            images = json.loads(os.environ.get("STANDIN_IMAGES") or "{}")
            print(images.get(name, os.environ.get("STANDIN_PREVIOUS_IMAGE", "")), end="")
        else:
            print(f"deployment.apps/{name}")
    elif "rollout" in argv:
        print("deployment successfully rolled out")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
