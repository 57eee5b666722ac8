// The six symbols that the ml-metadata and tensorflow-data-validation 1.21 extension modules
// (built for manylinux_2_39: glibc 2.38+, GCC 13/14 libstdc++) need and that Debian 12
// (glibc 2.36, GCC 12 libstdc++ = GLIBCXX_3.4.30, CXXABI_1.3.13) lacks.
//
// patch_wheel.py marks the missing symbol versions weak in each extension and adds this library
// as DT_NEEDED, so the dynamic loader binds these unversioned definitions instead. Build it
// without a version script: unversioned definitions satisfy any versioned reference.
#include <cstdlib>
#include <exception>
#include <ios>

extern "C" {

// glibc 2.38 routes strto* to C23 variants when compiled with -std=c2x / _GNU_SOURCE. The only
// C23 difference is accepting a "0b" prefix with base 0 or 2, which these modules never parse.
long __isoc23_strtol(const char* text, char** end, int base) {
  return std::strtol(text, end, base);
}
long long __isoc23_strtoll(const char* text, char** end, int base) {
  return std::strtoll(text, end, base);
}
unsigned long __isoc23_strtoul(const char* text, char** end, int base) {
  return std::strtoul(text, end, base);
}
unsigned long long __isoc23_strtoull(const char* text, char** end, int base) {
  return std::strtoull(text, end, base);
}

void* __cxa_begin_catch(void* exception) noexcept;

// GCC 14 exports this (CXXABI_1.3.15) for exceptions escaping a noexcept function: begin the
// catch so std::terminate's handler sees the active exception, then terminate.
[[noreturn]] void __cxa_call_terminate(void* exception) noexcept {
  if (exception != nullptr) {
    __cxa_begin_catch(exception);
  }
  std::terminate();
}

}  // extern "C"

namespace std {
// GCC 13 moved the iostream initialisation into libstdc++ and has objects that use <iostream>
// call this to pull it in. Here the static Init object below does that work, so it is empty.
void ios_base_library_init() {}
}  // namespace std

static std::ios_base::Init compat_iostream_init;
