#!/usr/bin/env bash
# Print CMAKE_ARGS for building llama-cpp-python on this CPU.
# Why: a native build turns on llama.cpp's AMX kernels, which crash (SIGSEGV in
# ggml_backend_amx_mul_mat) on some AMX machines. We build with GGML_NATIVE=OFF and
# switch on exactly the x86 SIMD extensions that /proc/cpuinfo reports, AMX always off.
set -euo pipefail
flags=" $(grep -m1 -E '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { [[ "$flags" == *" $1 "* ]]; }
onoff() { if has "$1"; then echo ON; else echo OFF; fi; }
args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
args+=" -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF"
case "$(uname -m)" in
  x86_64|amd64)
    args+=" -DGGML_SSE42=$(onoff sse4_2) -DGGML_AVX=$(onoff avx) -DGGML_AVX2=$(onoff avx2)"
    args+=" -DGGML_FMA=$(onoff fma) -DGGML_F16C=$(onoff f16c) -DGGML_BMI2=$(onoff bmi2)"
    args+=" -DGGML_AVX_VNNI=$(onoff avx_vnni)"
    args+=" -DGGML_AVX512=$(onoff avx512f) -DGGML_AVX512_VBMI=$(onoff avx512vbmi)"
    args+=" -DGGML_AVX512_VNNI=$(onoff avx512_vnni) -DGGML_AVX512_BF16=$(onoff avx512_bf16)"
    ;;
esac
echo "$args"
