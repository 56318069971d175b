// The registry store's JS class: new KvStore(path) over an LmdbStore (kv_store.h), on the main thread but for
// applyAsync, whose batch commits on the libuv pool. A failure of the store becomes the factory's error, like
// every other.
#include <memory>

#include "addon.h"
#include "kv_store.h"
#include "napi_ops.h"

namespace {

Napi::String Str(Napi::Env env, std::string_view s) { return Napi::String::New(env, s.data(), s.size()); }

class KvStore : public Napi::ObjectWrap<KvStore> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "KvStore", {
      InstanceMethod<&KvStore::Begin>("begin"),
      InstanceMethod<&KvStore::Commit>("commit"),
      InstanceMethod<&KvStore::Abort>("abort"),
      InstanceMethod<&KvStore::Get>("get"),
      InstanceMethod<&KvStore::Put>("put"),
      InstanceMethod<&KvStore::Del>("del"),
      InstanceMethod<&KvStore::Range>("range"),
      InstanceMethod<&KvStore::Count>("count"),
      InstanceMethod<&KvStore::Close>("close"),
      InstanceMethod<&KvStore::LastTxn>("lastTxn"),
      InstanceMethod<&KvStore::ApplyAsync>("applyAsync"),
    });
  }

  // The store of `this` (a KvStore), shared with a batch in flight.
  static std::shared_ptr<LmdbStore> StoreOf(const Napi::CallbackInfo& info) { return Unwrap(info.This().As<Napi::Object>())->store_; }

  // new KvStore(path): opens (creating) the LMDB file at path; its lock file is path + "-lock".
  explicit KvStore(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvStore>(info) {
    std::string path = ArgString(info, 0);
    store_ = CallJs(info.Env(), [&] { return std::make_shared<LmdbStore>(std::move(path)); });
  }

 private:
  Napi::Value Begin(const Napi::CallbackInfo& info) {
    CallJs(info.Env(), [&] { store_->Begin(); });
    return info.Env().Undefined();
  }

  Napi::Value Commit(const Napi::CallbackInfo& info) {
    CallJs(info.Env(), [&] { store_->Commit(); });
    return info.Env().Undefined();
  }

  Napi::Value Abort(const Napi::CallbackInfo& info) {
    store_->Abort();
    return info.Env().Undefined();
  }

  // get(key): the value, or undefined.
  Napi::Value Get(const Napi::CallbackInfo& info) {
    std::string key = ArgString(info, 0);
    std::optional<std::string> value = CallJs(info.Env(), [&] { return store_->Get(key); });
    return value ? Napi::Value(Str(info.Env(), *value)) : info.Env().Undefined();
  }

  Napi::Value Put(const Napi::CallbackInfo& info) {
    std::string key = ArgString(info, 0), value = ArgString(info, 1);
    CallJs(info.Env(), [&] { store_->Put(key, value); });
    return info.Env().Undefined();
  }

  // del(key): whether it was there.
  Napi::Value Del(const Napi::CallbackInfo& info) {
    std::string key = ArgString(info, 0);
    return Napi::Boolean::New(info.Env(), CallJs(info.Env(), [&] { return store_->Del(key); }));
  }

  // range(prefix, limit?, keysOnly?): [key, value] pairs (or keys) of the keys that start with prefix, in order.
  Napi::Value Range(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string prefix = ArgString(info, 0);
    uint32_t limit = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : UINT32_MAX;
    bool keysOnly = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    Napi::Array out = Napi::Array::New(env);
    uint32_t n = 0;
    if (limit == 0) return out;
    CallJs(env, [&] {
      store_->Scan(prefix, [&](std::string_view k, std::string_view v) {
        if (keysOnly) {
          out.Set(n++, Str(env, k));
        } else {
          Napi::Array pair = Napi::Array::New(env, 2);
          pair.Set(0u, Str(env, k));
          pair.Set(1u, Str(env, v));
          out.Set(n++, pair);
        }
        return n < limit;
      });
    });
    return out;
  }

  // count(prefix): how many keys start with prefix.
  Napi::Value Count(const Napi::CallbackInfo& info) {
    std::string prefix = ArgString(info, 0);
    double n = double(CallJs(info.Env(), [&] { return store_->Count(prefix); }));
    return Napi::Number::New(info.Env(), n);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    store_->Close();
    return info.Env().Undefined();
  }

  // lastTxn(): the id of the last commit of any process (a number: LMDB's ids stay far below 2^53).
  Napi::Value LastTxn(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(CallJs(info.Env(), [&] { return store_->LastTxn(); })));
  }

  Napi::Value ApplyAsync(const Napi::CallbackInfo& info);

  std::shared_ptr<LmdbStore> store_;  // set by the constructor, or the constructor threw
};

// applyAsync(base, keys, values): a promise of whether the batch was written (false: a commit landed since
// base, nothing written). values[i] is the value for keys[i], or null to delete it.
struct ApplyOp {
  std::shared_ptr<LmdbStore> store;
  size_t base;
  LmdbStore::Batch batch;
  bool applied = false;

  explicit ApplyOp(const Napi::CallbackInfo& info) : store(KvStore::StoreOf(info)), base(0) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsArray() || !info[2].IsArray())
      throw Napi::TypeError::New(env, "applyAsync(base, keys, values)");
    double b = info[0].As<Napi::Number>().DoubleValue();
    if (!(b >= 0 && b <= 9007199254740991.0) || b != double(size_t(b))) throw Napi::TypeError::New(env, "applyAsync: base must be a transaction id");
    base = size_t(b);
    Napi::Array keys = info[1].As<Napi::Array>(), values = info[2].As<Napi::Array>();
    if (keys.Length() != values.Length()) throw Napi::TypeError::New(env, "applyAsync: one value per key");
    batch.reserve(keys.Length());
    for (uint32_t i = 0; i < keys.Length(); i++) {
      Napi::Value k = keys.Get(i), v = values.Get(i);
      if (!k.IsString() || !(v.IsString() || v.IsNull())) throw Napi::TypeError::New(env, "applyAsync: keys are strings, values strings or null");
      if (v.IsNull()) batch.emplace_back(k.As<Napi::String>().Utf8Value(), std::nullopt);
      else batch.emplace_back(k.As<Napi::String>().Utf8Value(), v.As<Napi::String>().Utf8Value());
    }
  }
  void Execute() { applied = store->ApplyIf(base, batch); }
  Napi::Value Result(Napi::Env env) { return Napi::Boolean::New(env, applied); }
};

Napi::Value KvStore::ApplyAsync(const Napi::CallbackInfo& info) { return RunAsync<ApplyOp>(info); }

}  // namespace

void RegisterKvStore(Napi::Env env, Napi::Object exports) {
  exports.Set("KvStore", KvStore::Define(env));
}
