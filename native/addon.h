// Registration of each native area into the module's exports.
#pragma once
#include <napi.h>

void RegisterDm(Napi::Env env, Napi::Object exports);
void RegisterLoopAndBlock(Napi::Env env, Napi::Object exports);
void RegisterFileLock(Napi::Env env, Napi::Object exports);
void RegisterKvStore(Napi::Env env, Napi::Object exports);
void RegisterThinMetadata(Napi::Env env, Napi::Object exports);
