"""Where a run's figures came from, the torch-free half: provenance.json's names, the
code's git state, and reading a record back (`engine diff`, `engine rerun`, the tables).
The trainer writes the record (engine/train/environment.py)."""
from __future__ import annotations

import hashlib
import shlex
import subprocess
from pathlib import Path

PROVENANCE = "provenance.json"
PATCH = "code.patch"
PROJECT = Path(__file__).resolve().parents[2]  # the folder holding engine/


def _git(cwd: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(folder: Path) -> tuple[dict, str]:
    """({repo, commit, dirty}, the uncommitted diff against HEAD) of the git repository
    holding `folder`; commit None (and no diff) outside a repository or without git."""
    folder = Path(folder)
    top = _git(folder, "rev-parse", "--show-toplevel")
    commit = _git(folder, "rev-parse", "HEAD")
    if not top or not commit:
        return {"repo": None, "commit": None, "dirty": None}, ""
    status = _git(folder, "status", "--porcelain", "--untracked-files=no") or ""
    patch = _git(folder, "diff", "HEAD", "--binary") or "" if status.strip() else ""
    # the patch's hash tells apart two dirty trees on the same commit
    return {"repo": top.strip(), "commit": commit.strip(), "dirty": bool(status.strip()),
            "patch_sha1": hashlib.sha1(patch.encode()).hexdigest() if patch else None}, patch


def differences(old: dict, new: dict) -> list[str]:
    """One line for each way a rerun's code, environment or data differs from the
    original's provenance."""
    out = []
    a, b = old.get("code") or {}, new.get("code") or {}
    if (a.get("commit"), a.get("patch_sha1")) != (b.get("commit"), b.get("patch_sha1")):
        out.append(f"code differs: commit {describe_code(a)} then, {describe_code(b)} now")
    env_a, env_b = old.get("environment") or {}, new.get("environment") or {}
    keys = [k for k in ("python", "torch", "torchvision", "cuda", "cudnn", "gpu", "driver",
                        "cpu") if env_a.get(k) != env_b.get(k)]
    if keys:
        out.append("environment differs: " + "; ".join(
            f"{k} {env_a.get(k)} then, {env_b.get(k)} now" for k in keys))
    if (old.get("data") or {}).get("hash") != (new.get("data") or {}).get("hash"):
        out.append(f"data differs: fingerprint {(old.get('data') or {}).get('hash')} then, "
                   f"{(new.get('data') or {}).get('hash')} now")
    return out


def describe_code(code: dict) -> str:
    if not code.get("commit"):
        return "none (not a git repository)"
    return code["commit"][:10] + (f" with uncommitted changes {code['patch_sha1'][:8]}"
                                  if code.get("patch_sha1") else
                                  " with uncommitted changes" if code.get("dirty") else "")


def brief(prov: dict) -> dict[str, str]:
    """The record's short form, as the report's appendix and the app's side panel show
    it: commit (dirty marked), torch, device, data fingerprint, seed, command."""
    code, env, data = (prov.get(k) or {} for k in ("code", "environment", "data"))
    cmd = prov.get("command")
    return {"commit": (code.get("commit") or "not in git")[:10]
            + (" (dirty)" if code.get("dirty") else ""),
            "torch": str(env.get("torch", "?")),
            "device": str(env.get("gpu") or env.get("device") or "?"),
            "data": str(data.get("hash") or "?")[:12],
            "seed": str(prov.get("seed", "?")),
            "command": shlex.join(str(c) for c in cmd) if isinstance(cmd, list) and cmd
            else ""}
