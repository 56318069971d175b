{
  "targets": [
    {
      "target_name": "devmapper",
      "sources": [
        "native/addon.cc",
        "native/dm_ioctl.cc",
        "native/dm_addon.cc",
        "native/loop.cc",
        "native/block.cc",
        "native/blocking_thread.cc",
        "native/loop_block_addon.cc",
        "native/file_lock.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-fvisibility=hidden", "-fstack-protector-strong", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags": ["-fvisibility=hidden", "-fstack-protector-strong"]
    }
  ]
}
