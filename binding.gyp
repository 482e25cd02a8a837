{
  "targets": [
    {
      "target_name": "chai_attention",
      "sources": [
        "native/addon/addon.cpp",
        "native/addon/ops.cpp",
        "native/addon/engine.cpp",
        "native/core/error.cpp",
        "native/core/dtype.cpp",
        "native/core/tensor.cpp",
        "native/core/backend.cpp",
        "native/core/thread_pool.cpp",
        "native/core/attention_plan.cpp",
        "native/core/no_cuda.cpp",
        "native/cpu/simd.cpp",
        "native/cpu/quant_dot.cpp",
        "native/cpu/packed_quant.cpp",
        "native/cpu/gemm.cpp",
        "native/cpu/ops.cpp",
        "native/cpu/cpu_backend.cpp",
        "native/model/gguf.cpp",
        "native/model/architecture.cpp",
        "native/model/json.cpp",
        "native/model/mapped_file.cpp",
        "native/model/safetensors.cpp",
        "native/model/llama.cpp",
        "native/model/qwen.cpp",
        "native/engine/kv_cache.cpp",
        "native/engine/prefix_cache.cpp",
        "native/engine/session.cpp",
        "native/engine/attention_planner.cpp",
        "native/engine/resident_weights.cpp",
        "native/chai/clustering.cpp",
        "native/chai/calibration.cpp"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "CHAI_WITH_CUDA=0"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17"
      },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } }
    }
  ]
}
