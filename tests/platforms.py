"""What Istio and Envoy Gateway would hand Envoy for deploy/'s manifests, as a bootstrap a real
Envoy loads.

No cluster and no control plane here: this module stands in for their translation of the
parts the platforms own (the listener, the routes from a VirtualService or an HTTPRoute, the
store's cluster from a ServiceEntry + DestinationRule or a Backend + BackendTLSPolicy, the Wasm
filter from a WasmPlugin or an EnvoyExtensionPolicy), in the shape their documentation gives.
What the manifests embed for Envoy itself goes in verbatim: the EnvoyFilter patches (CLUSTER
and LISTENER adds, a NETWORK_FILTER and an HTTP_ROUTE merge, an HTTP_FILTER insert), the
EnvoyPatchPolicy adds and the EnvoyProxy bootstrap merge. So a fragment Envoy rejects fails
here, while a mistake in how a platform translates its own resources would not.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import yaml

ROUTER = "envoy.filters.http.router"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(docs: list[dict], kind: str) -> dict:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def proto_merge(dst: dict, src: dict) -> None:
    """Protobuf MergeFrom on JSON: messages merge field by field, repeated fields append,
    scalars are replaced (what Istio's MERGE and Envoy Gateway's bootstrap Merge do)."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            proto_merge(dst[key], value)
        elif isinstance(value, list) and isinstance(dst.get(key), list):
            dst[key].extend(copy.deepcopy(value))
        else:
            dst[key] = copy.deepcopy(value)


def protojson_struct(value) -> str:
    """JSON of a google.protobuf.Struct as Go's protojson writes it (Istio's pluginConfig):
    every number is a double, written without a fraction when it has none, in exponent form
    from 1e21 on."""
    def number(x: float) -> str:
        if x.is_integer() and abs(x) < 1e21:
            return str(int(x))
        return repr(x) if abs(x) >= 1e-6 else f"{x:e}"

    def render(v) -> str:
        if isinstance(v, bool) or v is None:
            return json.dumps(v)
        if isinstance(v, (int, float)):
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError("a Struct cannot hold NaN or infinity")
            return number(float(v))
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, list):
            return "[" + ",".join(render(i) for i in v) + "]"
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{render(i)}" for k, i in v.items()) + "}"

    return render(value)


def base_bootstrap(admin_port: int) -> dict:
    """What both platforms' own bootstraps hold that the manifests rely on: a node (SDS needs
    one) and an admin on loopback."""
    return {
        "node": {"id": "envoy-presign-gateway", "cluster": "envoy-presign-gateway"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": [], "clusters": []},
    }


def wasm_filter(name: str, root_id: str, configuration: str, host_env_keys: list[str],
                failure_policy: str, wasm_path: Path) -> dict:
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": WASM_TYPE,
            "config": {
                "name": name, "root_id": root_id, "failure_policy": failure_policy,
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": configuration},
                "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": str(wasm_path)}},
                              "environment_variables": {"host_env_keys": host_env_keys}},
            },
        },
    }


def gateway_listener(listen_port: int, virtual_hosts: list[dict], http_filters: list[dict],
                     **hcm_fields) -> dict:
    return {
        "name": "gateway",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {"@type": HCM_TYPE, "stat_prefix": "gateway",
                             "route_config": {"name": "gateway", "virtual_hosts": virtual_hosts},
                             "http_filters": http_filters + [{"name": ROUTER, "typed_config": {
                                 "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                             **hcm_fields},
        }]}],
    }


def tls_cluster(name: str, host: str, port: int, sni: str, san: str, ca: str, connect_timeout: str) -> dict:
    """The store's cluster as both platforms build it from the manifests' TLS settings."""
    return {
        "name": name, "type": "LOGICAL_DNS", "connect_timeout": connect_timeout,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": host, "port_value": port}}}}]}]},
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": TLS_TYPE, "sni": sni,
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"filename": ca},
                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": san}}]}}}},
    }


def hcm_of(listener: dict) -> dict:
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def istio_bootstrap(docs: list[dict], wasm_path: Path, listen_port: int, admin_port: int) -> dict:
    """The Istio ingress gateway's Envoy for deploy/istio/envoy-presign.yaml."""
    config = base_bootstrap(admin_port)
    pod = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    proxy_config = yaml.safe_load(pod["proxy.istio.io/config"])
    # Istio's bootstrap: its own runtime layer (runtimeValues) and the internal listener extension.
    config["layered_runtime"] = {"layers": [
        {"name": "global config", "static_layer": proxy_config.get("runtimeValues", {})},
        {"name": "admin", "admin_layer": {}}]}
    config["bootstrap_extensions"] = [{
        "name": "envoy.bootstrap.internal_listener",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"}}]

    service = one(docs, "VirtualService")["spec"]
    entry, rule = one(docs, "ServiceEntry")["spec"], one(docs, "DestinationRule")["spec"]
    clusters = {}
    routes = []
    for http in service["http"]:
        route = {"name": http["name"], "match": {"prefix": "/"}}
        for match in http.get("match", []):
            route["match"]["headers"] = [{"name": name, "string_match": {"exact": m["exact"]}}
                                         for name, m in match.get("headers", {}).items()]
        headers = http.get("headers", {})
        if "route" in http:
            [destination] = [r["destination"] for r in http["route"]]
            name = f"outbound|{destination['port']['number']}||{destination['host']}"
            tls = rule["trafficPolicy"]["tls"]
            assert rule["host"] == destination["host"] in entry["hosts"]
            clusters[name] = tls_cluster(name, destination["host"], destination["port"]["number"],
                                         tls["sni"], tls["subjectAltNames"][0], tls["caCertificates"],
                                         rule["trafficPolicy"]["connectionPool"]["tcp"]["connectTimeout"])
            # No `timeout` in the VirtualService: Istio disables the route timeout.
            route["route"] = {"cluster": name, "timeout": http.get("timeout", "0s")}
            route["request_headers_to_remove"] = headers.get("request", {}).get("remove", [])
            route["response_headers_to_remove"] = headers.get("response", {}).get("remove", [])
        else:
            response = http["directResponse"]
            route["direct_response"] = {"status": response["status"],
                                        "body": {"inline_string": response["body"]["string"]}}
            route["response_headers_to_add"] = [
                {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                for k, v in headers.get("response", {}).get("set", {}).items()]
        routes.append(route)
    # One virtual host per host of the VirtualService, as Istio builds them.
    virtual_hosts = [{"name": f"{host}:80", "domains": [host, f"{host}:*"], "routes": copy.deepcopy(routes)}
                     for host in service["hosts"]]
    plugin = one(docs, "WasmPlugin")
    spec = plugin["spec"]
    env = spec["vmConfig"]["env"]
    assert all(e["valueFrom"] == "HOST" for e in env)
    wasm = wasm_filter(f"{plugin['metadata']['namespace']}.{plugin['metadata']['name']}",
                       spec.get("pluginName", ""), protojson_struct(spec["pluginConfig"]),
                       [e["name"] for e in env],
                       {"FAIL_RELOAD": "FAIL_RELOAD", "FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN"}[
                           spec["failStrategy"]], wasm_path)
    listener = gateway_listener(listen_port, virtual_hosts, [wasm])
    resources = config["static_resources"]
    resources["listeners"].append(listener)
    resources["clusters"].extend(clusters.values())
    for patch in one(docs, "EnvoyFilter")["spec"]["configPatches"]:
        apply_istio_patch(config, listener, patch)
    return config


def apply_istio_patch(config: dict, listener: dict, patch: dict) -> None:
    """One EnvoyFilter patch, as Istio applies it to the gateway's configuration."""
    resources = config["static_resources"]
    operation, value = patch["patch"]["operation"], copy.deepcopy(patch["patch"]["value"])
    hcm = hcm_of(listener)
    match (patch["applyTo"], operation):
        case ("CLUSTER", "ADD"):
            resources["clusters"].append(value)
        case ("LISTENER", "ADD"):
            resources["listeners"].append(value)
        case ("NETWORK_FILTER", "MERGE"):
            assert patch["match"]["listener"]["filterChain"]["filter"]["name"] == \
                "envoy.filters.network.http_connection_manager"
            proto_merge(hcm, value["typed_config"])
        case ("HTTP_FILTER", "INSERT_BEFORE"):
            before = patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
            index = [f["name"] for f in hcm["http_filters"]].index(before)
            hcm["http_filters"].insert(index, value)
        case ("HTTP_ROUTE", "MERGE"):
            name = patch["match"]["routeConfiguration"]["vhost"]["route"]["name"]
            found = [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"] if r["name"] == name]
            assert found, f"no route named {name}"
            for route in found:
                proto_merge(route, value)
        case other:
            raise AssertionError(f"EnvoyFilter patch {other} is not one this stand-in applies")


def envoy_gateway_bootstrap(docs: list[dict], wasm_path: Path, listen_port: int, admin_port: int) -> dict:
    """Envoy Gateway's proxy for deploy/envoy-gateway/envoy-presign.yaml."""
    config = base_bootstrap(admin_port)
    # Envoy Gateway's own runtime layer, then the EnvoyProxy's bootstrap merged over it.
    config["layered_runtime"] = {"layers": [{"name": "global_config", "static_layer": {}}]}
    proxy = one(docs, "EnvoyProxy")["spec"]["bootstrap"]
    assert proxy["type"] == "Merge"
    proto_merge(config, yaml.safe_load(proxy["value"]))

    route = one(docs, "HTTPRoute")["spec"]
    filters = {f["metadata"]["name"]: f["spec"] for f in docs if f["kind"] == "HTTPRouteFilter"}
    backends = {b["metadata"]["name"]: b["spec"] for b in docs if b["kind"] == "Backend"}
    tls_policies = {p["spec"]["targetRefs"][0]["name"]: p["spec"] for p in docs if p["kind"] == "BackendTLSPolicy"}
    override = one(docs, "BackendTrafficPolicy")["spec"]["responseOverride"]
    clusters, routes = [], []
    for index, rule in enumerate(route["rules"]):
        entry = {"name": rule["name"], "match": {"prefix": "/"}}
        for match in rule.get("matches", []):
            if "headers" in match:
                entry["match"]["headers"] = [{"name": h["name"], "string_match": {"exact": h["value"]}}
                                             for h in match["headers"] if h["type"] == "Exact"]
        for item in rule.get("filters", []):
            if item["type"] == "RequestHeaderModifier":
                entry["request_headers_to_remove"] = item["requestHeaderModifier"]["remove"]
            elif item["type"] == "ResponseHeaderModifier":
                entry["response_headers_to_remove"] = item["responseHeaderModifier"]["remove"]
            elif item["type"] == "ExtensionRef":
                direct = filters[item["extensionRef"]["name"]]["directResponse"]
                entry["direct_response"] = {"status": direct["statusCode"],
                                            "body": {"inline_string": direct["body"]["inline"]}}
                entry["response_headers_to_add"] = [{
                    "header": {"key": "content-type", "value": direct["contentType"]},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
        if "backendRefs" in rule:
            [ref] = rule["backendRefs"]
            name = f"httproute/{index}"
            [endpoint] = backends[ref["name"]]["endpoints"]
            validation = tls_policies[ref["name"]]["validation"]
            assert validation["wellKnownCACertificates"] == "System"
            clusters.append(tls_cluster(name, endpoint["fqdn"]["hostname"], endpoint["fqdn"]["port"],
                                        validation["hostname"], validation["hostname"], SYSTEM_CA, "10s"))
            entry["route"] = {"cluster": name, "timeout": rule.get("timeouts", {}).get("request", "15s")}
            entry["typed_per_filter_config"] = {"envoy.filters.http.custom_response": response_override(override)}
        routes.append(entry)
    virtual_hosts = [{"name": host, "domains": [host], "routes": copy.deepcopy(routes)} for host in route["hostnames"]]

    policy = one(docs, "EnvoyExtensionPolicy")["spec"]
    [wasm_spec] = policy["wasm"]
    wasm = wasm_filter(wasm_spec["name"], wasm_spec["rootID"], json.dumps(wasm_spec["config"]),
                       wasm_spec["env"]["hostKeys"], "FAIL_OPEN" if wasm_spec["failOpen"] else "FAIL_CLOSED",
                       wasm_path)
    custom_response = {"name": "envoy.filters.http.custom_response", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.custom_response.v3.CustomResponse"}}
    early = one(docs, "ClientTrafficPolicy")["spec"]["headers"]["earlyRequestHeaders"]["remove"]
    listener = gateway_listener(listen_port, virtual_hosts, [custom_response, wasm], early_header_mutation_extensions=[{
        "name": "envoy.http.early_header_mutation.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
            "mutations": [{"remove": name} for name in early]}}])
    resources = config["static_resources"]
    resources["listeners"].append(listener)
    resources["clusters"].extend(clusters)
    for patch in one(docs, "EnvoyPatchPolicy")["spec"]["jsonPatches"]:
        operation = patch["operation"]
        assert (operation["op"], operation.get("path", "")) == ("add", ""), operation
        value = copy.deepcopy(operation["value"])
        assert value["name"] == patch["name"]
        key = {CLUSTER_TYPE: "clusters", LISTENER_TYPE: "listeners"}[patch["type"]]
        resources[key].append(value)
    return config


def response_override(rules: list[dict]) -> dict:
    """A BackendTrafficPolicy responseOverride as a custom_response matcher: each status
    range a regex-free predicate list (status code in one of the ranges) -> the local body."""
    [rule] = rules
    assert rule["source"] == "Backend"
    codes = [c for r in rule["match"]["statusCodes"] for c in range(r["range"]["start"], r["range"]["end"] + 1)]
    regex = "^(" + "|".join(str(c) for c in codes) + ")$"
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.custom_response.v3.CustomResponse",
        "custom_response_matcher": {"matcher_list": {"matchers": [{
            "predicate": {"single_predicate": {
                "input": {"name": "status", "typed_config": {
                    "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpResponseStatusCodeMatchInput"}},
                "value_match": {"safe_regex": {"google_re2": {}, "regex": regex}}}},
            "on_match": {"action": {"name": "response_override", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.http.custom_response.local_response_policy.v3.LocalResponsePolicy",
                "body": {"inline_string": rule["response"]["body"]["inline"]},
                "response_headers_to_add": [{
                    "header": {"key": "content-type", "value": rule["response"]["contentType"]},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}}},
        }]}},
    }


PLATFORMS = {"istio": istio_bootstrap, "envoy-gateway": envoy_gateway_bootstrap}
