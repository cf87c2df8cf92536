// What every C ABI layer of the bundled native backends shares, whatever the ABI version
// (v1 normconf_bn.h: tiny-dnn; v2 normconf.h: cpp): the thread-local error message, an
// error carrying its return code, and the exception -> return code guard.
//
// Return codes are the same numbers in both ABIs: OK 0, EINVAL 1, EUNSUPPORTED 2, EINTERNAL 3.
#pragma once

#include <cstdint>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>

#include "normconf/batch_norm.hpp"  // normconf::Unsupported

namespace normconf::abi {

inline constexpr int32_t kOk = 0, kEinval = 1, kEunsupported = 2, kEinternal = 3;

inline std::string& last_error() {
    thread_local std::string message;
    return message;
}

/// An error with its return code.
struct CallError : std::runtime_error {
    int32_t code;
    CallError(int32_t c, const std::string& what) : std::runtime_error(what), code(c) {}
};

/// Runs `body` and turns every exception into a return code (never lets one cross the C boundary).
template <typename F>
int32_t guarded(F&& body) noexcept {
    try {
        last_error().clear();
        body();
        return kOk;
    } catch (const CallError& e) {
        last_error() = e.what();
        return e.code;
    } catch (const normconf::Unsupported& e) {
        last_error() = e.what();
        return kEunsupported;
    } catch (const std::invalid_argument& e) {
        last_error() = e.what();
        return kEinval;
    } catch (const std::bad_alloc&) {
        last_error() = "out of memory";
        return kEinternal;
    } catch (const std::exception& e) {
        last_error() = e.what();
        return kEinternal;
    } catch (...) {
        last_error() = "unknown C++ exception";
        return kEinternal;
    }
}

}  // namespace normconf::abi
