"""Strict validation of Kubernetes manifests against CustomResourceDefinition schemas.

What `kubectl apply --validate=strict` asks of the API server, without a cluster: the kind and
apiVersion must be served by a known CRD, every field must be one its `openAPIV3Schema` defines
(an unknown field is an error, not silently pruned), and types, enums, patterns, bounds and
required fields must hold. CEL rules (`x-kubernetes-validations`) are evaluated with cel-python
after the schema's defaults are applied, as the API server does; a rule that compares with the
old object (`oldSelf`) or calls a Kubernetes CEL library function cel-python lacks (`isURL`,
`format.*`, …) is counted as not evaluated, so a report says how many were left to the API server.

Schemas come from CRD files (e.g. `kubectl get crd <name> -o yaml` from a cluster) or from the
hand-written notation of deploy/schemas/ (`expand`); Kubernetes' own kinds (ServiceAccount,
ConfigMap, Deployment, Service) from the kubernetes-validate package's schemas, strict.
tests/integration/test_manifests.py runs it on deploy/ with deploy/schemas/; by hand:

    python3 tests/k8s_schema.py --schemas <crd-or-notation.yaml>... -- <manifest.yaml>...
    python3 tests/k8s_schema.py --schemas deploy/schemas/*.yaml --cross-check <crd.yaml>...
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# RFC 1123 subdomain, what the API server requires of most object names.
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
METADATA_FIELDS = {"name", "namespace", "labels", "annotations", "generateName"}
# The Kubernetes version whose built-in kinds the manifests are checked against.
KUBERNETES_VERSION = "1.33"
SCALARS = {
    "string": {"type": "string"},
    "duration": {"type": "string"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "map": {"type": "object", "additionalProperties": {"type": "string"}},
    "any": {"x-kubernetes-preserve-unknown-fields": True},
}
JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
}


@dataclass
class Report:
    """The errors of one document, and the CEL rules met on its path."""

    errors: list[str] = field(default_factory=list)
    cel_evaluated: int = 0
    cel_rules: int = 0  # not evaluated

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")


def expand(node) -> dict:
    """The structural schema a node of deploy/schemas/'s notation stands for."""
    if isinstance(node, str):
        if node.startswith("enum:"):
            return {"type": "string", "enum": [v.strip() for v in node[len("enum:"):].split("|")]}
        if node not in SCALARS:
            raise ValueError(f"unknown type {node!r} in a schema notation")
        return dict(SCALARS[node])
    if isinstance(node, list):
        (item,) = node
        return {"type": "array", "items": expand(item)}
    if "*" in node:
        return {"type": "object", "additionalProperties": expand(node["*"])}
    properties = {name.rstrip("!"): expand(sub) for name, sub in node.items()}
    required = [name.rstrip("!") for name in node if name.endswith("!")]
    return {"type": "object", "properties": properties, **({"required": required} if required else {})}


def load_schemas(paths: list[Path]) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> schema, from CRD files and from deploy/schemas/'s notation."""
    schemas: dict[tuple[str, str], dict] = {}
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kinds" in doc:
                for key, body in doc["kinds"].items():
                    api_version, kind = key.split()
                    schemas[(api_version, kind)] = expand(body)
                continue
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served", True):
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def _type_ok(value, schema: dict) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    expected = schema.get("type")
    if expected is None:
        return True
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, JSON_TYPES[expected])


def _matches(value, schema: dict, path: str) -> bool:
    """Whether value satisfies schema (for anyOf/oneOf/not branches, which add no fields)."""
    probe = Report()
    check(value, schema, path, probe, branch=True)
    return not probe.errors


def check_cel(value, rules: list[dict], path: str, report: Report) -> None:
    """The node's CEL rules, with `self` bound to value (defaults already applied)."""
    import celpy  # only here: the hand-written schemas carry no CEL rules

    for rule in rules:
        if "oldSelf" in rule["rule"]:
            report.cel_rules += 1
            continue
        try:
            environment = celpy.Environment()
            program = environment.program(environment.compile(rule["rule"]))
            result = program.evaluate({"self": celpy.json_to_cel(value)})
        except Exception:  # noqa: BLE001 - cel-python raises its own errors for what it lacks
            report.cel_rules += 1
            continue
        if isinstance(result, celpy.CELEvalError):
            report.cel_rules += 1
            continue
        report.cel_evaluated += 1
        if not bool(result):
            report.error(path, f"CEL rule failed: {rule.get('message') or rule['rule']}")


def apply_defaults(value, schema: dict):
    """A copy of value with the schema's defaults filled in where a field is absent."""
    if isinstance(value, dict):
        value = dict(value)
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(value[name], sub)
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(item, schema["items"]) for item in value]
    return value


def check(value, schema: dict, path: str, report: Report, branch: bool = False) -> None:
    """Validates value against one structural schema node, appending to report."""
    if schema.get("x-kubernetes-validations") and value is not None:
        check_cel(apply_defaults(value, schema), schema["x-kubernetes-validations"], path, report)
    if value is None:
        if not schema.get("nullable") and not branch:
            report.error(path, "null is not allowed")
        return
    if not _type_ok(value, schema):
        report.error(path, f"expected {schema.get('type', 'int-or-string')}, got {type(value).__name__}")
        return
    if "enum" in schema and value not in schema["enum"]:
        report.error(path, f"{value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            report.error(path, f"{value!r} does not match {schema['pattern']!r}")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            report.error(path, f"length {len(value)} outside [{schema.get('minLength', 0)}, {schema.get('maxLength')}]")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            report.error(path, f"{value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            report.error(path, f"{value} > maximum {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            report.error(path, f"{len(value)} items outside [{schema.get('minItems', 0)}, {schema.get('maxItems')}]")
        for index, item in enumerate(value):
            if "items" in schema:
                check(item, schema["items"], f"{path}[{index}]", report, branch)
    if isinstance(value, dict):
        _check_object(value, schema, path, report, branch)
    for key in ("allOf",):
        for sub in schema.get(key, []):
            check(value, sub, path, report, branch=True)
    if "anyOf" in schema and not any(_matches(value, sub, path) for sub in schema["anyOf"]):
        report.error(path, "matches none of the anyOf alternatives")
    if "oneOf" in schema:
        count = sum(_matches(value, sub, path) for sub in schema["oneOf"])
        if count != 1:
            report.error(path, f"matches {count} of the oneOf alternatives, not exactly one")
    if "not" in schema and _matches(value, schema["not"], path):
        report.error(path, "matches a forbidden (not) schema")


def _check_object(value: dict, schema: dict, path: str, report: Report, branch: bool) -> None:
    for name in schema.get("required", []):
        if name not in value:
            report.error(path, f"missing required field {name!r}")
    properties = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    for name, item in value.items():
        child = f"{path}.{name}"
        if name in properties:
            check(item, properties[name], child, report, branch)
        elif isinstance(additional, dict):
            check(item, additional, child, report, branch)
        elif branch or schema.get("x-kubernetes-preserve-unknown-fields") or additional is True:
            continue
        else:
            report.error(child, "unknown field")


def check_metadata(metadata, report: Report) -> None:
    """What the API server checks of ObjectMeta (CRD schemas leave it to it)."""
    if not isinstance(metadata, dict):
        report.error("metadata", "missing")
        return
    for name in metadata:
        if name not in METADATA_FIELDS:
            report.error(f"metadata.{name}", "unknown field")
    for name in ("name", "namespace"):
        if name in metadata and not (isinstance(metadata[name], str) and NAME.match(metadata[name])):
            report.error(f"metadata.{name}", f"{metadata[name]!r} is not a valid name")
    if "name" not in metadata:
        report.error("metadata", "missing required field 'name'")
    for name in ("labels", "annotations"):
        values = metadata.get(name, {})
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            report.error(f"metadata.{name}", "must map strings to strings")


def validate_builtin(doc: dict, report: Report) -> bool:
    """Kubernetes' own kinds, strictly (unknown fields refused); False if it is not one."""
    import kubernetes_validate  # only here: the CRD checks need nothing but PyYAML

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return False
    except kubernetes_validate.ValidationError as error:
        location = ".".join(str(p) for p in error.path)
        report.error(location, error.message)
    return True


def validate(doc: dict, schemas: dict[tuple[str, str], dict]) -> Report:
    """Validates one manifest document; an unknown apiVersion/kind is an error."""
    report = Report()
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in schemas and validate_builtin(doc, report):
        return report
    if key not in schemas:
        report.error("", f"no schema for apiVersion {key[0]!r} kind {key[1]!r}")
        return report
    check_metadata(doc.get("metadata"), report)
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    schema = dict(schemas[key])
    schema["properties"] = {k: v for k, v in schema.get("properties", {}).items()
                            if k not in ("apiVersion", "kind", "metadata")}
    check(body, schema, doc["kind"], report)
    return report


def differences(mine: dict, theirs: dict, path: str = "") -> list[str]:
    """Where a hand-written schema says what the full CRD schema does not (a field it lacks,
    another type or enum, a field required that it leaves optional)."""
    found = []
    if "x-kubernetes-preserve-unknown-fields" in mine and len(mine) == 1:
        return found
    for key in ("type", "enum"):
        if key in mine and mine.get(key) != theirs.get(key) and not (key == "enum" and "enum" not in theirs):
            found.append(f"{path or '.'}: {key} {mine.get(key)!r}, the CRD says {theirs.get(key)!r}")
    for name in mine.get("required", []):
        if name not in theirs.get("required", []):
            found.append(f"{path}.{name}: required here, optional in the CRD")
    for name, sub in mine.get("properties", {}).items():
        if name not in theirs.get("properties", {}):
            found.append(f"{path}.{name}: not a field of the CRD")
        else:
            found += differences(sub, theirs["properties"][name], f"{path}.{name}")
    if "items" in mine:
        found += differences(mine["items"], theirs.get("items", {}), f"{path}[]")
    if isinstance(mine.get("additionalProperties"), dict):
        found += differences(mine["additionalProperties"], theirs.get("additionalProperties") or {}, f"{path}.*")
    return found


def cross_check(notation: list[Path], crds: list[Path]) -> int:
    mine, theirs = load_schemas(notation), load_schemas(crds)
    failed = False
    for key, schema in mine.items():
        if key not in theirs:
            print(f"FAIL {key[0]} {key[1]}: no such CRD version")
            failed = True
            continue
        found = differences(schema, theirs[key])
        print(f"{'FAIL' if found else 'ok'} {key[0]} {key[1]}")
        for line in found:
            print(f"  {line}")
        failed |= bool(found)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schemas", nargs="+", type=Path, required=True)
    parser.add_argument("--cross-check", nargs="+", type=Path, metavar="CRD",
                        help="compare the --schemas notation with these full CRDs instead")
    parser.add_argument("manifests", nargs="*", type=Path)
    args = parser.parse_args(argv)
    if args.cross_check:
        return cross_check(args.schemas, args.cross_check)
    schemas = load_schemas(args.schemas)
    failed = False
    for path in args.manifests:
        for index, doc in enumerate(d for d in yaml.safe_load_all(path.read_text()) if d):
            report = validate(doc, schemas)
            name = f"{path}#{index} {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            status = "FAIL" if report.errors else "ok"
            print(f"{status} {name} (CEL rules evaluated: {report.cel_evaluated}, not: {report.cel_rules})")
            for line in report.errors:
                print(f"  {line}")
            failed |= bool(report.errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
