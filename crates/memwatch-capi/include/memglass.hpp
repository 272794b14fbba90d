// memglass.hpp: C++17 RAII wrapper over memglass.h (header-only, part of
// libmemwatch). Errors throw memglass::error (code + message).
//
//   struct Book { std::atomic<uint64_t> orders; double bid; char symbol[8]; };
//   memglass::producer p("trading");
//   auto type = p.register_type<Book>("Book", {
//       MEMGLASS_FIELD(Book, orders), MEMGLASS_FIELD(Book, bid), MEMGLASS_FIELD(Book, symbol)});
//   auto book = p.create<Book>(type, "AAPL");   // destroyed with `book`
//   book->bid = 1.5;
//
//   memglass::observer o("trading");            // another process
//   double bid = o.read_f64("AAPL", "bid");
#ifndef MEMGLASS_HPP
#define MEMGLASS_HPP

#include <memglass.h>
#include <memwatch.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace memglass {

/// A failed memglass call: `code` is a MEMGLASS_ERR_* value.
struct error : std::runtime_error {
    int code;
    error(int c, const char *what) : std::runtime_error(what), code(c) {}
};

inline int check(int rc) {
    if (rc < 0) throw error(rc, memwatch_last_error());
    return rc;
}

namespace detail {
template <class T> struct prim_of { static constexpr int value = -1; };
template <> struct prim_of<bool> { static constexpr int value = MEMGLASS_BOOL; };
template <> struct prim_of<int8_t> { static constexpr int value = MEMGLASS_I8; };
template <> struct prim_of<uint8_t> { static constexpr int value = MEMGLASS_U8; };
template <> struct prim_of<int16_t> { static constexpr int value = MEMGLASS_I16; };
template <> struct prim_of<uint16_t> { static constexpr int value = MEMGLASS_U16; };
template <> struct prim_of<int32_t> { static constexpr int value = MEMGLASS_I32; };
template <> struct prim_of<uint32_t> { static constexpr int value = MEMGLASS_U32; };
template <> struct prim_of<int64_t> { static constexpr int value = MEMGLASS_I64; };
template <> struct prim_of<uint64_t> { static constexpr int value = MEMGLASS_U64; };
template <> struct prim_of<float> { static constexpr int value = MEMGLASS_F32; };
template <> struct prim_of<double> { static constexpr int value = MEMGLASS_F64; };
template <> struct prim_of<char> { static constexpr int value = MEMGLASS_CHAR; };

/// Field description of a member of type M: scalars, std::atomic<scalar>,
/// fixed arrays of scalars (char arrays are strings). Anything else does
/// not compile.
template <class M> struct describe {
    static constexpr int prim = prim_of<M>::value;
    static constexpr uint32_t array_len = 0;
    static constexpr int atomicity = MEMGLASS_PLAIN;
};
template <class M> struct describe<std::atomic<M>> {
    static constexpr int prim = prim_of<M>::value;
    static constexpr uint32_t array_len = 0;
    static constexpr int atomicity = MEMGLASS_ATOMIC;
    static_assert(sizeof(std::atomic<M>) == sizeof(M) && std::atomic<M>::is_always_lock_free,
                  "memglass: std::atomic<M> must be lock-free and the size of M");
};
template <class M, size_t N> struct describe<M[N]> {
    static constexpr int prim = prim_of<M>::value;
    static constexpr uint32_t array_len = N;
    static constexpr int atomicity = MEMGLASS_PLAIN;
};
}  // namespace detail

/// A field of type M at `offset`; `semantics`, `unit`, `help` optional.
template <class M>
memglass_field_t field(const char *path, size_t offset, int semantics = MEMGLASS_GAUGE,
                       const char *unit = nullptr, const char *help = nullptr) {
    using D = detail::describe<std::remove_cv_t<M>>;
    static_assert(D::prim > 0, "memglass: unsupported field type (use a scalar, std::atomic of one, "
                               "or a fixed array of scalars)");
    memglass_field_t f{};
    f.path = path;
    f.offset = static_cast<uint32_t>(offset);
    f.array_len = D::array_len;
    f.prim = static_cast<uint8_t>(D::prim);
    f.atomicity = static_cast<uint8_t>(D::atomicity);
    f.semantics = static_cast<uint8_t>(semantics);
    f.unit = unit;
    f.help = help;
    return f;
}

/// MEMGLASS_FIELD(Type, member [, semantics, unit, help]): the member's type
/// decides primitive, array length and atomicity at compile time.
#define MEMGLASS_FIELD(T, m, ...) \
    ::memglass::field<decltype(T::m)>(#m, offsetof(T, m), ##__VA_ARGS__)

/// A live object of T in shared memory; destroying the handle destroys it.
template <class T> class object {
  public:
    object(memglass_producer_t *p, T *ptr, memglass_object_id_t id) : p_(p), ptr_(ptr), id_(id) {}
    object(object &&o) noexcept : p_(std::exchange(o.p_, nullptr)), ptr_(o.ptr_), id_(o.id_) {}
    object(const object &) = delete;
    object &operator=(const object &) = delete;
    ~object() {
        if (p_) memglass_destroy(p_, id_);
    }
    T *operator->() const { return ptr_; }
    T &operator*() const { return *ptr_; }
    T *get() const { return ptr_; }
    memglass_object_id_t id() const { return id_; }

  private:
    memglass_producer_t *p_;
    T *ptr_;
    memglass_object_id_t id_;
};

/// A session's producer; the destructor shuts the session down. Objects
/// must be destroyed before it.
class producer {
  public:
    explicit producer(const std::string &session, const char *dir = nullptr) {
        check(memglass_producer_init(session.c_str(), dir, &p_));
    }
    producer(producer &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    producer(const producer &) = delete;
    producer &operator=(const producer &) = delete;
    ~producer() {
        if (p_) memglass_producer_free(p_);
    }

    /// Registers T's layout; returns its type index.
    template <class T>
    uint32_t register_type(const char *name, std::initializer_list<memglass_field_t> fields) {
        static_assert(std::is_standard_layout_v<T>, "memglass: T must be standard-layout");
        std::vector<memglass_field_t> v(fields);
        uint32_t idx = 0;
        check(memglass_register_type(p_, name, sizeof(T), alignof(T), v.data(), v.size(), &idx));
        return idx;
    }

    /// Registers a layout from a field table (what memglass-gen emits).
    uint32_t register_fields(const char *name, size_t size, size_t align,
                             const memglass_field_t *fields, size_t n) {
        uint32_t idx = 0;
        check(memglass_register_type(p_, name, static_cast<uint32_t>(size),
                                     static_cast<uint32_t>(align), fields, n, &idx));
        return idx;
    }

    /// A zero-initialised T labelled `label`.
    template <class T> object<T> create(uint32_t type, const std::string &label) {
        void *data = nullptr;
        memglass_object_id_t id{};
        check(memglass_create(p_, type, label.c_str(), 1, &data, &id));
        return object<T>(p_, static_cast<T *>(data), id);
    }

    memglass_producer_t *raw() const { return p_; }

  private:
    memglass_producer_t *p_ = nullptr;
};

/// A read-only observer of a session.
class observer {
  public:
    explicit observer(const std::string &session, const char *dir = nullptr) {
        check(memglass_observer_connect(session.c_str(), dir, &o_));
    }
    observer(observer &&o) noexcept : o_(std::exchange(o.o_, nullptr)) {}
    observer(const observer &) = delete;
    observer &operator=(const observer &) = delete;
    ~observer() { memglass_observer_close(o_); }

    bool refresh() { return check(memglass_observer_refresh(o_)) == 1; }
    int object_count() const { return check(memglass_object_count(o_)); }
    /// 0 alive, 1 stale, 2 dead.
    int liveness() const { return check(memglass_liveness(o_)); }
    double read_f64(const std::string &label, const std::string &path) const {
        double v = 0;
        check(memglass_read_f64(o_, label.c_str(), path.c_str(), &v));
        return v;
    }
    int64_t read_i64(const std::string &label, const std::string &path) const {
        int64_t v = 0;
        check(memglass_read_i64(o_, label.c_str(), path.c_str(), &v));
        return v;
    }
    std::string read_str(const std::string &label, const std::string &path) const {
        char buf[256];
        int n = check(memglass_read_str(o_, label.c_str(), path.c_str(), buf, sizeof buf));
        return std::string(buf, static_cast<size_t>(n));
    }

  private:
    memglass_observer_t *o_ = nullptr;
};

}  // namespace memglass
#endif
