// CHECK: invariants that stay on in every build. A failed CHECK is a programmer error: it prints
// the condition and location and aborts. Input from a peer or a disk is never CHECKed; it is
// validated and answered with a Status.
// DCHECK: the same for expensive invariants, compiled only in debug builds.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace ferry::internal {
[[noreturn]] inline void CheckFailed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "ferry: CHECK failed: %s at %s:%d\n", condition, file, line);
  std::abort();
}
}  // namespace ferry::internal

#define CHECK(condition)                                                         \
  do {                                                                           \
    if (!(condition)) ::ferry::internal::CheckFailed(#condition, __FILE__, __LINE__); \
  } while (0)

#define CHECK_EQ(a, b) CHECK((a) == (b))
#define CHECK_LE(a, b) CHECK((a) <= (b))
#define CHECK_LT(a, b) CHECK((a) < (b))

#ifdef NDEBUG
#define DCHECK(condition) \
  do {                    \
  } while (0)
#else
#define DCHECK(condition) CHECK(condition)
#endif
