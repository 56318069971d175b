{
  # LMDB's C sources, for the registry store (native/kv_store.cc), vendored in deps/lmdb (see its README); the
  # lmdb-js copy in deps/lmdb-js-legacy only reads registries written before the switch (native/kv_legacy.cc).
  "variables": {
    "lmdb_src": "deps/lmdb",
    "lmdb_legacy_src": "deps/lmdb-js-legacy",
    # 1: the addon's own sources with AddressSanitizer and UBSan (`node-gyp rebuild --devmapper_sanitize=1`;
    # test/sanitize.sh builds the same through CMakeLists.txt). Never for a build users load.
    "devmapper_sanitize%": 0
  },
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
        "native/file_lock.cc",
        "native/file_lock_addon.cc",
        "native/kv_store.cc",
        "native/kv_store_addon.cc",
        "native/kv_migrate.cc",
        "native/kv_legacy.cc",
        "native/crc32c.cc",
        "native/thin_metadata.cc",
        "native/thin_metadata_addon.cc"
      ],
      "dependencies": ["lmdb", "lmdb_legacy"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<(lmdb_src)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-fvisibility=hidden", "-fstack-protector-strong", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "cflags": ["-fvisibility=hidden", "-fstack-protector-strong"],
      "conditions": [
        ["devmapper_sanitize==1", {
          # -O1 after the release -O3: quicker to build, and reports stay readable. Any report ends the process.
          "cflags": ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"],
          "ldflags": ["-fsanitize=address,undefined"]
        }]
      ]
    },
    {
      "target_name": "lmdb",
      "type": "static_library",
      "sources": ["<(lmdb_src)/mdb.c", "<(lmdb_src)/midl.c"],
      "include_dirs": ["<(lmdb_src)"],
      # Third-party C: its warnings are not ours to fix.
      "cflags": ["-fvisibility=hidden", "-fstack-protector-strong", "-fPIC", "-w"]
    },
    {
      # Every external symbol renamed legacy_* by the force-included header, so that it links beside "lmdb".
      "target_name": "lmdb_legacy",
      "type": "static_library",
      "sources": ["<(lmdb_legacy_src)/mdb.c", "<(lmdb_legacy_src)/midl.c"],
      "include_dirs": ["<(lmdb_legacy_src)"],
      # -include finds the header through the include path (the compiler runs in the build folder).
      "cflags": ["-include", "lmdb_legacy_names.h", "-fvisibility=hidden", "-fstack-protector-strong", "-fPIC", "-w"]
    }
  ]
}
