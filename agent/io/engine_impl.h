// The concrete engines behind agent/io/engine.h, for engine.cc (and nothing else) to make:
// io_uring in uring_engine.cc (the only file that includes liburing.h) and the portable fallback
// in posix_engine.cc. Callers use MakeEngine, which picks between them.
// Threading: the functions are thread-safe; each engine belongs to one thread.
#pragma once

#include <cstdint>
#include <memory>

#include "agent/io/engine.h"
#include "base/result.h"

namespace ferry::io::internal {

// Creates and destroys a small ring: OK when io_uring works in this process, else the errno
// (EPERM, ENOSYS, ENOMEM, ...) in an error status.
Status ProbeUring();

// REQUIRES: 1 <= depth <= kIoDepthMax.
Result<std::unique_ptr<Engine>> MakeUringEngine(uint32_t depth);
std::unique_ptr<Engine> MakePosixEngine(uint32_t depth);

}  // namespace ferry::io::internal
