# The filter as an OCI image for Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy:
# FROM scratch with one layer holding plugin.wasm, the layout both fetchers read.
#
#   docker build -f docker/plugin.Dockerfile -t <registry>/envoy-presign-plugin:<version> .
#   docker push <registry>/envoy-presign-plugin:<version>   # then pin the digest it prints
FROM scratch
COPY target/wasm32-wasip1/release/envoy_presign.wasm /plugin.wasm
