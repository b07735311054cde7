#!/usr/bin/env python3
"""Tier-1 check of `sdnbed manifests`: every object validates strictly against each Kubernetes
version given, and the YAML reads back as exactly the JSON rendering (the YAML writer loses
nothing).

    validate.py OUT.yaml OUT.jsonl 1.30.0 1.37.0

Prints one line per object and version checked; exits 1 on the first failure.
"""
import json
import sys

import kubernetes_validate
import yaml


def main() -> int:
    yaml_path, json_path, *versions = sys.argv[1:]
    with open(yaml_path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    with open(json_path) as f:
        objs = [json.loads(line) for line in f if line.strip()]
    if docs != objs:
        for i, (d, o) in enumerate(zip(docs, objs)):
            if d != o:
                print(f"object {i}: YAML reads back as {d!r}, JSON says {o!r}")
                break
        else:
            print(f"{len(docs)} YAML documents, {len(objs)} JSON objects")
        return 1
    if not docs:
        print("no objects rendered")
        return 1
    for obj in docs:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        for v in versions:
            try:
                kubernetes_validate.validate(obj, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                print(f"{name} invalid for Kubernetes {v}: {e.message} at {list(e.path)}")
                return 1
            print(f"ok {v} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
