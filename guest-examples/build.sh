#!/usr/bin/env bash
# Builds every guest example into target/guest-examples/LANG-NAME.wasm,
# installing the toolchains first when they are missing (into
# target/guest-toolchains/, except Debian packages):
#
#   wat      the catshost-wat crate (wat + wit-component)
#   c        Debian clang 14, lld, wasi-libc, libclang-rt-14-dev-wasm32;
#            bindings and the component from catshost-guest-tools
#            (wit-bindgen-c 0.63, wit-component, wasmtime 48's adapter)
#   rust     Debian rustc-web 1.96 and lld-22, unpacked (not installed:
#            they would clash with rustup) and driven by rustup's cargo,
#            -Zbuild-std for wasm32-unknown-unknown, wit-bindgen 0.63;
#            echo-p3 against wit/p3 (wasi:http/service@0.3.0), chat
#            against catshost:guest/websocket-handler
#   python   componentize-py 0.25.1 (PyPI, in a venv); the WASI 0.3 ones
#            against wit/p3 (wasi:http/service@0.3.0, auth-p3
#            catshost:guest-p3/middleware), the WebSocket ones against
#            catshost:guest/websocket-handler
#   js       @bytecodealliance/componentize-js 0.23.0 (npm)
#
#   guest-examples/build.sh              # every language
#   guest-examples/build.sh c python     # some
#   guest-examples/build.sh --toolchains # only install what every language
#                                        # needs (network, little CPU: CI runs
#                                        # it beside the Rust build)
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

root=$PWD
out=$root/target/guest-examples
tools=$root/target/guest-toolchains
mkdir -p "$out" "$tools"
toolchains_only=
[ "${1:-}" != --toolchains ] || { toolchains_only=1; shift; }
languages=("$@")
[ ${#languages[@]} -gt 0 ] || languages=(wat c rust python js)

if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
apt_install() { # PACKAGE...: installs the Debian packages not yet installed
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing ${missing[*]} (apt)" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# What each build takes, for the README table: "LANG NAME SECONDS BYTES".
record() { echo "$1 $2 $3 $(stat -c %s "$out/$1-$2.wasm")" >>"$out/build-times"; }

guest_tools() {
  cargo build -q --release -p catshost-guest-tools -p catshost-wat
}

build_wat() {
  guest_tools
  local name
  for name in hello upper; do
    local start=$SECONDS
    target/release/wat-component "guest-examples/wat/examples/$name.wat" "$out/wat-$name.wasm"
    record wat "$name" $((SECONDS - start))
  done
}

toolchain_c() {
  apt_install clang lld wasi-libc libclang-rt-14-dev-wasm32
}

build_c() {
  toolchain_c
  guest_tools
  local gen=$tools/c-bindings name
  target/release/catshost-guest-tools c-bindings wit catshost:guest/handler "$gen"
  for name in hello sum fetch; do
    local start=$SECONDS
    clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Werror \
      -I "$gen" -o "$tools/c-$name.core.wasm" \
      "guest-examples/c/$name.c" "$gen/handler.c" "$gen/handler_component_type.o"
    target/release/catshost-guest-tools component "$tools/c-$name.core.wasm" "$out/c-$name.wasm" proxy
    record c "$name" $((SECONDS - start))
  done
}

rust_toolchain() {
  local dir=$tools/rust-web
  if [ ! -x "$dir/usr/bin/rustc" ]; then
    echo "== unpacking Debian's rustc-web 1.96 and lld-22 into $dir" >&2
    local debs=$tools/rust-web-debs
    mkdir -p "$debs" "$dir"
    # The std package is named after rustc-web's version
    # (libstd-rust-web-1.96): ask apt which.
    local std
    std=$(apt-cache depends libstd-rust-web-dev 2>/dev/null | awk '/Depends: libstd-rust-web-[0-9]/ { print $2; exit }')
    if [ -z "$std" ]; then
      "${sudo[@]}" apt-get update -qq
      std=$(apt-cache depends libstd-rust-web-dev | awk '/Depends: libstd-rust-web-[0-9]/ { print $2; exit }')
    fi
    [ -n "$std" ] || { echo "guest-examples/build.sh: apt knows no libstd-rust-web-*" >&2; exit 1; }
    (cd "$debs" && apt-get download -qq rustc-web "$std" libstd-rust-web-dev rust-web-src \
      libllvm22 lld-22)
    local deb
    for deb in "$debs"/*.deb; do dpkg -x "$deb" "$dir"; done
  fi
  echo "$dir"
}

build_rust() {
  apt_install ca-certificates
  local dir
  dir=$(rust_toolchain)
  guest_tools
  local start=$SECONDS locked=--locked
  # The first build writes the lock file; it is committed.
  [ -f guest-examples/rust/Cargo.lock ] || locked=
  (
    export LD_LIBRARY_PATH=$dir/usr/lib/x86_64-linux-gnu
    export RUSTC=$dir/usr/bin/rustc RUSTC_BOOTSTRAP=1
    export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$dir/usr/bin/wasm-ld-22
    # rustup's cargo drives Debian's rustc (cargo-web itself needs more
    # shared libraries than rustc does); RUSTC_BOOTSTRAP allows -Z for both.
    cargo build -q --release $locked \
      --manifest-path guest-examples/rust/Cargo.toml \
      --target-dir "$tools/rust-target" \
      --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
  )
  local seconds=$((SECONDS - start)) name
  # echo-p3 is the WASI 0.3 one (wasi:http/service@0.3.0, against wit/p3);
  # chat the WebSocket one (catshost:guest/websocket-handler).
  # One cargo build makes every core module: each records its time.
  for name in hello sum echo-p3 chat cors auth pass front spin-header-adder; do
    target/release/catshost-guest-tools component \
      "$tools/rust-target/wasm32-unknown-unknown/release/${name//-/_}.wasm" "$out/rust-$name.wasm"
    record rust "$name" "$seconds"
  done
}

toolchain_python() {
  local venv=$tools/python
  if [ ! -x "$venv/bin/componentize-py" ]; then
    echo "== installing componentize-py 0.25.1 (PyPI) into $venv" >&2
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install -q --disable-pip-version-check componentize-py==0.25.1
  fi
}

build_python() {
  toolchain_python
  local venv=$tools/python
  local name
  for name in hello sum files echo; do
    local start=$SECONDS
    "$venv/bin/componentize-py" -d wit -w catshost:guest/handler componentize app \
      -p "guest-examples/python/$name" -o "$out/python-$name.wasm" >/dev/null
    record python "$name" $((SECONDS - start))
  done
  # WASI 0.3 guests (async Python, wasi:http/service@0.3.0) against wit/p3:
  # the example, and the fixture of the host's instance-reuse tests.
  local dir
  for dir in guest-examples/python/echo-p3 tests/fixtures/p3-faults; do
    local start=$SECONDS
    name=${dir##*/}
    "$venv/bin/componentize-py" -d wit/p3 -w wasi:http/service@0.3.0 componentize app \
      -p "$dir" -o "$out/python-$name.wasm" >/dev/null
    record python "$name" $((SECONDS - start))
  done
  # The WASI 0.3 middleware (wasi:http/middleware@0.3.0, and the tenant's
  # environment for AUTH_TOKEN): catshost:guest-p3/middleware in wit/p3.
  local start=$SECONDS
  "$venv/bin/componentize-py" -d wit/p3 -w catshost:guest-p3/middleware componentize app \
    -p guest-examples/python/auth-p3 -o "$out/python-auth-p3.wasm" >/dev/null
  record python auth-p3 $((SECONDS - start))
  # WebSocket guests (catshost:websocket/handler and wasi:http/proxy): the
  # echo example, and the fixture of the host's WebSocket fault tests.
  for dir in guest-examples/python/websocket tests/fixtures/ws-faults; do
    local start=$SECONDS
    name=${dir##*/}
    "$venv/bin/componentize-py" -d wit -w catshost:guest/websocket-handler componentize app \
      -p "$dir" -o "$out/python-$name.wasm" >/dev/null
    record python "$name" $((SECONDS - start))
  done
}

toolchain_js() {
  local js=$tools/js
  command -v npm >/dev/null || apt_install nodejs npm
  if [ ! -x "$js/node_modules/.bin/componentize-js" ]; then
    echo "== installing @bytecodealliance/componentize-js 0.23.0 (npm) into $js" >&2
    mkdir -p "$js"
    npm install --silent --no-audit --no-fund --prefix "$js" @bytecodealliance/componentize-js@0.23.0
  fi
}

build_js() {
  toolchain_js
  local js=$tools/js
  guest_tools
  # ComponentizeJS 0.23 knows wasi:http 0.2.10 exactly: the same WIT with
  # that version; the proxy adapter keeps its imports to the proxy world.
  local wit=$tools/js-wit
  rm -rf "$wit" && cp -r wit "$wit"
  sed -i 's/0\.2\.12/0.2.10/g' "$wit"/*.wit "$wit"/deps/*.wit
  target/release/catshost-guest-tools adapter proxy "$tools/proxy-adapter.wasm"
  local name
  for name in hello sum; do
    local start=$SECONDS
    "$js/node_modules/.bin/componentize-js" "guest-examples/js/$name.js" --wit "$wit" \
      -n handler --preview2-adapter "$tools/proxy-adapter.wasm" -o "$out/js-$name.wasm" >/dev/null
    record js "$name" $((SECONDS - start))
  done
}

for language in "${languages[@]}"; do
  case $language in
    wat | c | rust | python | js) ;;
    *) echo "guest-examples/build.sh: unknown language '$language' (wat, c, rust, python, js)" >&2; exit 2 ;;
  esac
done

if [ -n "$toolchains_only" ]; then
  for language in "${languages[@]}"; do
    case $language in
      c) toolchain_c ;;
      rust) apt_install ca-certificates && rust_toolchain >/dev/null ;;
      python) toolchain_python ;;
      js) toolchain_js ;;
    esac
  done
  exit 0
fi

# How long each language took, its toolchain's install included.
took=()
for language in "${languages[@]}"; do
  echo "== $language" >&2
  sed -i "/^$language /d" "$out/build-times" 2>/dev/null || true
  start=$SECONDS
  "build_$language"
  took+=("$language $((SECONDS - start)) s")
done
ls -l "$out"/*.wasm >&2
echo "guest-examples/build.sh took: $(IFS=,; echo "${took[*]}" | sed 's/,/, /g')" >&2
