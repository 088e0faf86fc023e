#include "io/pickle.h"

#include <cstring>
#include <deque>
#include <set>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "io/mapped_file.h"

namespace parakeet {

namespace {

enum class Kind : uint8_t {
    kNone,
    kBool,
    kInt,
    kFloat,
    kStr,
    kBytes,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kStorage,
    kTensor
};

const char* kind_name(Kind kind) {
    switch (kind) {
        case Kind::kNone: return "None";
        case Kind::kBool: return "bool";
        case Kind::kInt: return "int";
        case Kind::kFloat: return "float";
        case Kind::kStr: return "str";
        case Kind::kBytes: return "bytes";
        case Kind::kTuple: return "tuple";
        case Kind::kList: return "list";
        case Kind::kDict: return "dict";
        case Kind::kGlobal: return "global";
        case Kind::kStorage: return "storage";
        case Kind::kTensor: return "tensor";
    }
    return "?";
}

// The callables a state_dict pickle may name.
enum class Global : uint8_t { kOrderedDict, kRebuildTensorV2, kRebuildParameter, kStorageClass };

struct Object;

// A pickled value. Containers live in the unpickler's arena and are referenced by pointer, so
// shared and even self-referencing containers (memo + APPEND) need no reference counting and free
// with the arena.
struct Value {
    Kind kind = Kind::kNone;
    Global global = Global::kOrderedDict;  // kGlobal
    DType dtype = DType::kF32;             // kGlobal with kStorageClass
    int64_t i = 0;          // kBool, kInt; index into storages_/tensors_ for kStorage/kTensor
    double f = 0;           // kFloat
    Object* obj = nullptr;  // kStr, kBytes, kTuple, kList, kDict
};

struct Object {
    std::string text;          // kStr, kBytes
    std::vector<Value> items;  // kTuple, kList; kDict: key0, value0, key1, value1, ...
};

// _rebuild_tensor_v2 arguments, checked once the tensor's name is known.
struct RawTensor {
    size_t storage = 0;
    int64_t storage_offset = 0;
    std::vector<int64_t> shape;
    std::vector<int64_t> strides;
};

struct StorageClass {
    const char* name;
    DType dtype;
};

constexpr StorageClass kStorageClasses[] = {
    {"FloatStorage", DType::kF32},     {"DoubleStorage", DType::kF64}, {"HalfStorage", DType::kF16},
    {"BFloat16Storage", DType::kBF16}, {"LongStorage", DType::kI64},   {"IntStorage", DType::kI32},
    {"ShortStorage", DType::kI16},     {"CharStorage", DType::kI8},    {"ByteStorage", DType::kU8},
    {"BoolStorage", DType::kBool},
};

constexpr size_t kMaxRank = 64;

class Unpickler {
public:
    Unpickler(const uint8_t* data, size_t size, const std::string& context)
        : data_(data), size_(size), ctx_(context) {}

    StateDict run();

private:
    // Input.
    uint8_t next_byte();
    const uint8_t* take(uint64_t n);
    std::string_view take_line();
    uint64_t take_uint(int n_bytes);
    int64_t parse_decimal(std::string_view text);
    int64_t parse_long(const uint8_t* p, uint64_t n);

    // Stack.
    size_t fence() const { return marks_.empty() ? 0 : marks_.back(); }
    void push(const Value& v);
    Value pop();
    const Value& top() const;
    std::vector<Value> pop_mark();

    // Values.
    Value make(Kind kind, std::string text = {}, std::vector<Value> items = {});
    Value make_int(int64_t i, Kind kind = Kind::kInt);
    Value find_global(std::string_view module, std::string_view name);
    Value reduce(const Value& fn, const Value& args);
    Value persistent_load(const Value& pid);
    void memo_put(uint64_t index, const Value& v);
    Value memo_get(uint64_t index) const;
    StateDict finish(const Value& root) const;

    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& ctx_;

    std::deque<Object> objects_;
    std::vector<Value> stack_;
    std::vector<size_t> marks_;
    std::unordered_map<uint64_t, Value> memo_;
    std::vector<RawTensor> tensors_;
    std::vector<std::pair<std::string, PickledStorage>> storages_;
    std::unordered_map<std::string, size_t> storage_index_;
};

uint8_t Unpickler::next_byte() { return *take(1); }

const uint8_t* Unpickler::take(uint64_t n) {
    PK_CHECK(n <= size_ - pos_, kFormat,
             "{}: pickle is truncated (needs {} more bytes at byte {} of {})", ctx_, n, pos_,
             size_);
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
}

std::string_view Unpickler::take_line() {
    const void* nl = std::memchr(data_ + pos_, '\n', size_ - pos_);
    PK_CHECK(nl != nullptr, kFormat,
             "{}: pickle is truncated (unterminated text argument at byte {})", ctx_, pos_);
    size_t n = static_cast<size_t>(static_cast<const uint8_t*>(nl) - (data_ + pos_));
    std::string_view line(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n + 1;
    return line;
}

uint64_t Unpickler::take_uint(int n_bytes) {
    const uint8_t* p = take(static_cast<uint64_t>(n_bytes));
    uint64_t v = 0;
    for (int i = n_bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

int64_t Unpickler::parse_decimal(std::string_view text) {
    size_t i = 0;
    bool negative = false;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) negative = text[i++] == '-';
    PK_CHECK(i < text.size(), kFormat, "{}: pickle has a malformed integer '{}'", ctx_,
             printable(text));
    int64_t v = 0;
    for (; i < text.size(); ++i) {
        char c = text[i];
        PK_CHECK(c >= '0' && c <= '9', kFormat, "{}: pickle has a malformed integer '{}'", ctx_,
                 printable(text));
        PK_CHECK(!__builtin_mul_overflow(v, 10, &v) &&
                     !__builtin_add_overflow(v, negative ? -(c - '0') : c - '0', &v),
                 kUnsupported, "{}: pickle integer '{}' does not fit in 64 bits", ctx_,
                 printable(text));
    }
    return v;
}

// Little-endian two's complement of n bytes (LONG1 / LONG4).
int64_t Unpickler::parse_long(const uint8_t* p, uint64_t n) {
    if (n == 0) return 0;
    bool negative = p[n - 1] & 0x80;
    for (uint64_t k = 8; k < n; ++k) {
        PK_CHECK(p[k] == (negative ? 0xff : 0x00), kUnsupported,
                 "{}: pickle integer does not fit in 64 bits", ctx_);
    }
    uint64_t v = negative ? ~uint64_t{0} : 0;
    for (uint64_t k = std::min<uint64_t>(n, 8); k-- > 0;) v = (v << 8) | p[k];
    PK_CHECK(n <= 8 || ((v >> 63) != 0) == negative, kUnsupported,
             "{}: pickle integer does not fit in 64 bits", ctx_);
    return static_cast<int64_t>(v);
}

void Unpickler::push(const Value& v) {
    PK_CHECK(stack_.size() < kPickleMaxStack, kFormat, "{}: pickle stack grows past {} values",
             ctx_, kPickleMaxStack);
    stack_.push_back(v);
}

Value Unpickler::pop() {
    PK_CHECK(stack_.size() > fence(), kFormat, "{}: pickle stack underflow at byte {}", ctx_, pos_);
    Value v = stack_.back();
    stack_.pop_back();
    return v;
}

const Value& Unpickler::top() const {
    PK_CHECK(stack_.size() > fence(), kFormat, "{}: pickle stack underflow at byte {}", ctx_, pos_);
    return stack_.back();
}

std::vector<Value> Unpickler::pop_mark() {
    PK_CHECK(!marks_.empty(), kFormat, "{}: pickle has no MARK to pop at byte {}", ctx_, pos_);
    size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Value> items(stack_.begin() + static_cast<ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
}

Value Unpickler::make(Kind kind, std::string text, std::vector<Value> items) {
    PK_CHECK(objects_.size() < kPickleMaxObjects, kFormat, "{}: pickle builds more than {} objects",
             ctx_, kPickleMaxObjects);
    Object& o = objects_.emplace_back();
    o.text = std::move(text);
    o.items = std::move(items);
    Value v;
    v.kind = kind;
    v.obj = &o;
    return v;
}

Value Unpickler::make_int(int64_t i, Kind kind) {
    Value v;
    v.kind = kind;
    v.i = i;
    return v;
}

Value Unpickler::find_global(std::string_view module, std::string_view name) {
    Value v;
    v.kind = Kind::kGlobal;
    if (module == "collections" && name == "OrderedDict") {
        v.global = Global::kOrderedDict;
        return v;
    }
    if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
        v.global = Global::kRebuildTensorV2;
        return v;
    }
    if (module == "torch._utils" && name == "_rebuild_parameter") {
        v.global = Global::kRebuildParameter;
        return v;
    }
    if (module == "torch") {
        for (const StorageClass& sc : kStorageClasses) {
            if (name == sc.name) {
                v.global = Global::kStorageClass;
                v.dtype = sc.dtype;
                return v;
            }
        }
    }
    PK_THROW(kFormat, "{}: pickle refers to forbidden global '{}.{}'", ctx_, printable(module, 60),
             printable(name, 60));
}

Value Unpickler::persistent_load(const Value& pid) {
    const std::vector<Value>* t = pid.kind == Kind::kTuple ? &pid.obj->items : nullptr;
    PK_CHECK(t && t->size() == 5 && (*t)[0].kind == Kind::kStr && (*t)[0].obj->text == "storage" &&
                 (*t)[1].kind == Kind::kGlobal && (*t)[1].global == Global::kStorageClass &&
                 (*t)[2].kind == Kind::kStr && (*t)[3].kind == Kind::kStr &&
                 (*t)[4].kind == Kind::kInt,
             kFormat,
             "{}: pickle has a persistent id that is not ('storage', <storage class>, key, "
             "location, numel)",
             ctx_);
    const std::string& key = (*t)[2].obj->text;
    DType dtype = (*t)[1].dtype;
    int64_t numel = (*t)[4].i;
    PK_CHECK(numel >= 0, kFormat, "{}: storage '{}' has a negative size {}", ctx_, printable(key),
             numel);
    auto [it, inserted] = storage_index_.emplace(key, storages_.size());
    if (inserted) {
        storages_.push_back({key, PickledStorage{dtype, numel}});
    } else {
        const PickledStorage& s = storages_[it->second].second;
        PK_CHECK(s.dtype == dtype && s.numel == numel, kFormat,
                 "{}: storage '{}' is declared twice, as {} x {} and as {} x {}", ctx_,
                 printable(key), s.numel, dtype_name(s.dtype), numel, dtype_name(dtype));
    }
    Value v = make_int(static_cast<int64_t>(it->second), Kind::kStorage);
    return v;
}

Value Unpickler::reduce(const Value& fn, const Value& args) {
    PK_CHECK(fn.kind == Kind::kGlobal, kFormat, "{}: pickle calls a {}, not an allowed global",
             ctx_, kind_name(fn.kind));
    PK_CHECK(args.kind == Kind::kTuple, kFormat,
             "{}: pickle calls a global with a {} instead of an argument tuple", ctx_,
             kind_name(args.kind));
    const std::vector<Value>& a = args.obj->items;
    switch (fn.global) {
        case Global::kOrderedDict:
            PK_CHECK(a.empty(), kUnsupported, "{}: pickle calls OrderedDict with arguments", ctx_);
            return make(Kind::kDict);
        case Global::kRebuildTensorV2: {
            PK_CHECK((a.size() == 6 || a.size() == 7) && a[0].kind == Kind::kStorage &&
                         a[1].kind == Kind::kInt && a[2].kind == Kind::kTuple &&
                         a[3].kind == Kind::kTuple &&
                         (a[4].kind == Kind::kBool || a[4].kind == Kind::kInt),
                     kFormat,
                     "{}: pickle calls _rebuild_tensor_v2 without (storage, offset, size, "
                     "stride, requires_grad, hooks)",
                     ctx_);
            RawTensor t;
            t.storage = static_cast<size_t>(a[0].i);
            t.storage_offset = a[1].i;
            for (int k = 0; k < 2; ++k) {
                const std::vector<Value>& dims = a[2 + k].obj->items;
                PK_CHECK(dims.size() <= kMaxRank, kFormat,
                         "{}: pickle has a tensor of rank {} (limit {})", ctx_, dims.size(),
                         kMaxRank);
                std::vector<int64_t>& out = k == 0 ? t.shape : t.strides;
                for (const Value& d : dims) {
                    PK_CHECK(d.kind == Kind::kInt, kFormat,
                             "{}: pickle has a tensor {} entry that is a {}", ctx_,
                             k == 0 ? "size" : "stride", kind_name(d.kind));
                    out.push_back(d.i);
                }
            }
            PK_CHECK(tensors_.size() < kPickleMaxObjects, kFormat,
                     "{}: pickle builds more than {} tensors", ctx_, kPickleMaxObjects);
            tensors_.push_back(std::move(t));
            return make_int(static_cast<int64_t>(tensors_.size() - 1), Kind::kTensor);
        }
        case Global::kRebuildParameter:
            PK_CHECK(a.size() == 3 && a[0].kind == Kind::kTensor, kFormat,
                     "{}: pickle calls _rebuild_parameter without (tensor, requires_grad, hooks)",
                     ctx_);
            return a[0];
        case Global::kStorageClass:
            PK_THROW(kUnsupported,
                     "{}: pickle constructs a storage directly (only persistent ids are supported)",
                     ctx_);
    }
    PK_THROW(kInternal, "{}: unhandled global", ctx_);
}

void Unpickler::memo_put(uint64_t index, const Value& v) {
    auto it = memo_.find(index);
    if (it != memo_.end()) {
        it->second = v;
        return;
    }
    PK_CHECK(memo_.size() < kPickleMaxMemo, kFormat, "{}: pickle memo grows past {} entries", ctx_,
             kPickleMaxMemo);
    memo_.emplace(index, v);
}

Value Unpickler::memo_get(uint64_t index) const {
    auto it = memo_.find(index);
    PK_CHECK(it != memo_.end(), kFormat, "{}: pickle reads memo entry {} that was never written",
             ctx_, index);
    return it->second;
}

StateDict Unpickler::run() {
    while (true) {
        PK_CHECK(pos_ < size_, kFormat, "{}: pickle ends without a STOP opcode", ctx_);
        size_t op_pos = pos_;
        uint8_t op = next_byte();
        switch (op) {
            case 0x80: {  // PROTO
                uint8_t proto = next_byte();
                PK_CHECK(proto <= 5, kUnsupported, "{}: pickle protocol {} is not supported", ctx_,
                         proto);
                break;
            }
            case 0x95: {  // FRAME (protocol 4): a length prefix; opcodes run on regardless
                uint64_t n = take_uint(8);
                PK_CHECK(n <= size_ - pos_, kFormat,
                         "{}: pickle frame of {} bytes runs past the end", ctx_, n);
                break;
            }
            case '.': {  // STOP
                Value root = pop();
                return finish(root);
            }
            case '(':  // MARK
                PK_CHECK(marks_.size() < kPickleMaxMarks, kFormat,
                         "{}: pickle nests more than {} MARKs", ctx_, kPickleMaxMarks);
                marks_.push_back(stack_.size());
                break;
            case '0':  // POP: like CPython, an empty frame above a MARK pops the MARK itself.
                if (stack_.size() > fence()) {
                    stack_.pop_back();
                } else {
                    PK_CHECK(!marks_.empty(), kFormat, "{}: pickle stack underflow at byte {}",
                             ctx_, op_pos);
                    marks_.pop_back();
                }
                break;
            case '1':  // POP_MARK
                pop_mark();
                break;
            case '2':  // DUP
                push(top());
                break;
            case 'N': push(Value{}); break;
            case 0x88: push(make_int(1, Kind::kBool)); break;                     // NEWTRUE
            case 0x89: push(make_int(0, Kind::kBool)); break;                     // NEWFALSE
            case 'J': push(make_int(static_cast<int32_t>(take_uint(4)))); break;  // BININT
            case 'K': push(make_int(static_cast<int64_t>(take_uint(1)))); break;  // BININT1
            case 'M': push(make_int(static_cast<int64_t>(take_uint(2)))); break;  // BININT2
            case 0x8a:                                                            // LONG1
            case 0x8b: {                                                          // LONG4
                uint64_t n = take_uint(op == 0x8a ? 1 : 4);
                push(make_int(parse_long(take(n), n)));
                break;
            }
            case 'I': {  // INT (text); protocol 0 spells booleans "00" and "01"
                std::string_view line = take_line();
                if (line == "00" || line == "01") {
                    push(make_int(line == "01", Kind::kBool));
                } else {
                    push(make_int(parse_decimal(line)));
                }
                break;
            }
            case 'L': {  // LONG (text), optionally with a trailing 'L'
                std::string_view line = take_line();
                if (!line.empty() && line.back() == 'L') line.remove_suffix(1);
                push(make_int(parse_decimal(line)));
                break;
            }
            case 'G': {  // BINFLOAT: big-endian IEEE double
                const uint8_t* p = take(8);
                uint64_t bits = 0;
                for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];
                Value v;
                v.kind = Kind::kFloat;
                std::memcpy(&v.f, &bits, 8);
                push(v);
                break;
            }
            case 'X':     // BINUNICODE
            case 0x8c:    // SHORT_BINUNICODE
            case 0x8d:    // BINUNICODE8
            case 'U':     // SHORT_BINSTRING
            case 'B':     // BINBYTES
            case 'C':     // SHORT_BINBYTES
            case 0x8e: {  // BINBYTES8
                int width = (op == 0x8c || op == 'U' || op == 'C') ? 1
                            : (op == 0x8d || op == 0x8e)           ? 8
                                                                   : 4;
                uint64_t n = take_uint(width);
                const uint8_t* p = take(n);
                Kind kind = (op == 'B' || op == 'C' || op == 0x8e) ? Kind::kBytes : Kind::kStr;
                push(make(kind,
                          std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n))));
                break;
            }
            case 'T': {  // BINSTRING: signed 32-bit length
                auto n = static_cast<int32_t>(take_uint(4));
                PK_CHECK(n >= 0, kFormat, "{}: pickle string has a negative length at byte {}",
                         ctx_, op_pos);
                const uint8_t* p = take(static_cast<uint64_t>(n));
                push(make(Kind::kStr,
                          std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n))));
                break;
            }
            case ')': push(make(Kind::kTuple)); break;                  // EMPTY_TUPLE
            case ']': push(make(Kind::kList)); break;                   // EMPTY_LIST
            case '}': push(make(Kind::kDict)); break;                   // EMPTY_DICT
            case 't': push(make(Kind::kTuple, {}, pop_mark())); break;  // TUPLE
            case 'l': push(make(Kind::kList, {}, pop_mark())); break;   // LIST
            case 0x85:                                                  // TUPLE1
            case 0x86:                                                  // TUPLE2
            case 0x87: {                                                // TUPLE3
                size_t n = op - 0x84u;
                PK_CHECK(stack_.size() >= fence() + n, kFormat,
                         "{}: pickle stack underflow at byte {}", ctx_, op_pos);
                std::vector<Value> items(stack_.end() - static_cast<ptrdiff_t>(n), stack_.end());
                stack_.resize(stack_.size() - n);
                push(make(Kind::kTuple, {}, std::move(items)));
                break;
            }
            case 'd': {  // DICT
                std::vector<Value> items = pop_mark();
                PK_CHECK(items.size() % 2 == 0, kFormat,
                         "{}: pickle DICT with an odd number of items", ctx_);
                push(make(Kind::kDict, {}, std::move(items)));
                break;
            }
            case 'a': {  // APPEND
                Value v = pop();
                const Value& list = top();
                PK_CHECK(list.kind == Kind::kList, kFormat, "{}: pickle appends to a {}", ctx_,
                         kind_name(list.kind));
                list.obj->items.push_back(v);
                break;
            }
            case 'e': {  // APPENDS
                std::vector<Value> items = pop_mark();
                const Value& list = top();
                PK_CHECK(list.kind == Kind::kList, kFormat, "{}: pickle appends to a {}", ctx_,
                         kind_name(list.kind));
                list.obj->items.insert(list.obj->items.end(), items.begin(), items.end());
                break;
            }
            case 's': {  // SETITEM
                Value value = pop();
                Value key = pop();
                const Value& dict = top();
                PK_CHECK(dict.kind == Kind::kDict, kFormat, "{}: pickle sets an item on a {}", ctx_,
                         kind_name(dict.kind));
                dict.obj->items.push_back(key);
                dict.obj->items.push_back(value);
                break;
            }
            case 'u': {  // SETITEMS
                std::vector<Value> items = pop_mark();
                const Value& dict = top();
                PK_CHECK(dict.kind == Kind::kDict && items.size() % 2 == 0, kFormat,
                         "{}: pickle sets {} items on a {}", ctx_, items.size(),
                         kind_name(dict.kind));
                dict.obj->items.insert(dict.obj->items.end(), items.begin(), items.end());
                break;
            }
            case 'c': {  // GLOBAL: "module\nname\n"
                std::string_view module = take_line();
                std::string_view name = take_line();
                push(find_global(module, name));
                break;
            }
            case 0x93: {  // STACK_GLOBAL
                Value name = pop();
                Value module = pop();
                PK_CHECK(module.kind == Kind::kStr && name.kind == Kind::kStr, kFormat,
                         "{}: pickle STACK_GLOBAL on a {} and a {}", ctx_, kind_name(module.kind),
                         kind_name(name.kind));
                push(find_global(module.obj->text, name.obj->text));
                break;
            }
            case 'R': {  // REDUCE
                Value args = pop();
                Value fn = pop();
                push(reduce(fn, args));
                break;
            }
            case 'b': {  // BUILD: the OrderedDict's _metadata (or a tensor's state); ignored
                pop();
                const Value& target = top();
                PK_CHECK(target.kind == Kind::kDict || target.kind == Kind::kTensor, kFormat,
                         "{}: pickle sets the state of a {}", ctx_, kind_name(target.kind));
                break;
            }
            case 'Q': {  // BINPERSID
                Value pid = pop();
                push(persistent_load(pid));
                break;
            }
            case 'q': memo_put(take_uint(1), top()); break;   // BINPUT
            case 'r': memo_put(take_uint(4), top()); break;   // LONG_BINPUT
            case 0x94: memo_put(memo_.size(), top()); break;  // MEMOIZE
            case 'p': {                                       // PUT (text)
                int64_t index = parse_decimal(take_line());
                PK_CHECK(index >= 0, kFormat, "{}: pickle memo index {} is negative", ctx_, index);
                memo_put(static_cast<uint64_t>(index), top());
                break;
            }
            case 'h': push(memo_get(take_uint(1))); break;  // BINGET
            case 'j': push(memo_get(take_uint(4))); break;  // LONG_BINGET
            case 'g': {                                     // GET (text)
                int64_t index = parse_decimal(take_line());
                PK_CHECK(index >= 0, kFormat, "{}: pickle memo index {} is negative", ctx_, index);
                push(memo_get(static_cast<uint64_t>(index)));
                break;
            }
            default:
                PK_THROW(kUnsupported, "{}: pickle opcode 0x{:02x} at byte {} is not supported",
                         ctx_, op, op_pos);
        }
    }
}

StateDict Unpickler::finish(const Value& root) const {
    PK_CHECK(root.kind == Kind::kDict, kFormat, "{}: pickle holds a {}, not a state_dict", ctx_,
             kind_name(root.kind));
    StateDict out;
    for (const auto& [key, storage] : storages_) out.storages.emplace(key, storage);
    std::set<std::string_view> names;
    const std::vector<Value>& items = root.obj->items;
    for (size_t k = 0; k + 1 < items.size(); k += 2) {
        const Value& key = items[k];
        const Value& value = items[k + 1];
        PK_CHECK(key.kind == Kind::kStr, kFormat, "{}: state_dict has a {} key", ctx_,
                 kind_name(key.kind));
        const std::string& name = key.obj->text;
        std::string shown = printable(name);
        PK_CHECK(value.kind == Kind::kTensor, kFormat,
                 "{}: state_dict entry '{}' is a {}, not a tensor", ctx_, shown,
                 kind_name(value.kind));
        PK_CHECK(names.insert(name).second, kFormat, "{}: state_dict has tensor '{}' twice", ctx_,
                 shown);

        const RawTensor& raw = tensors_[static_cast<size_t>(value.i)];
        const auto& [storage_key, storage] = storages_[raw.storage];
        PickledTensor t;
        t.name = name;
        t.storage_key = storage_key;
        t.dtype = storage.dtype;
        t.storage_offset = raw.storage_offset;
        t.shape = raw.shape;
        t.strides = raw.strides;

        PK_CHECK(t.shape.size() == t.strides.size(), kFormat,
                 "{}: tensor '{}' has {} sizes but {} strides", ctx_, shown, t.shape.size(),
                 t.strides.size());
        int64_t numel = 1;
        for (size_t d = 0; d < t.shape.size(); ++d) {
            PK_CHECK(t.shape[d] >= 0 && t.strides[d] >= 0, kFormat,
                     "{}: tensor '{}' has a negative size or stride (shape {}, strides {})", ctx_,
                     shown, shape_str(t.shape), shape_str(t.strides));
            PK_CHECK(!__builtin_mul_overflow(numel, t.shape[d], &numel), kFormat,
                     "{}: tensor '{}' has shape {} whose element count overflows int64", ctx_,
                     shown, shape_str(t.shape));
        }
        PK_CHECK(t.storage_offset >= 0 && t.storage_offset <= storage.numel, kFormat,
                 "{}: tensor '{}' starts at element {} of storage '{}', which has {}", ctx_, shown,
                 t.storage_offset, printable(storage_key), storage.numel);
        if (numel > 0) {
            // Index of the last element the tensor touches; it must lie inside the storage.
            int64_t last = t.storage_offset;
            bool overflow = false;
            for (size_t d = 0; d < t.shape.size(); ++d) {
                int64_t step = 0;
                overflow |= __builtin_mul_overflow(t.shape[d] - 1, t.strides[d], &step);
                overflow |= __builtin_add_overflow(last, step, &last);
            }
            PK_CHECK(!overflow && last < storage.numel, kFormat,
                     "{}: tensor '{}' (shape {}, strides {}, offset {}) reaches past the {} "
                     "elements of storage '{}'",
                     ctx_, shown, shape_str(t.shape), shape_str(t.strides), t.storage_offset,
                     storage.numel, printable(storage_key));
        }
        out.tensors.push_back(std::move(t));
    }
    return out;
}

}  // namespace

StateDict unpickle_state_dict(const uint8_t* data, size_t size, const std::string& context) {
    Unpickler unpickler(data, size, context);
    return unpickler.run();
}

}  // namespace parakeet
