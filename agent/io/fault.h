// Fault injection into the data path's file I/O, for the reliability tests (issue 8) — the seam
// leveldb's fault-injection Env and SQLite's I/O-error loops use. Off unless the process starts
// with FERRY_TEST_FAULTS set (then every engine MakeEngine returns is wrapped, and the flushes
// below consult the same plan); a process that injects says so once, loudly, in its log.
//
//   FERRY_TEST_FAULTS="at=N[,error=EIO|ENOSPC|short|stall][,kind=read|write|sync|any][,count=K][,stall_ms=M]"
//
// The N-th operation of `kind` (1-based, counted over the whole process: engine reads, writes
// and fdatasyncs, and the syncfs/fsync/fdatasync calls of the commit path) and the K-1 after it
// (default 1) fail with `error` (default EIO): -errno as the op's result, or -1/errno from a
// flush. `short`: a read returns half of what was asked (as if the file ended early); `stall`:
// the operation waits M ms (default 2000) first. Each injected fault is logged as
// "fault injection: operation N (kind) ...", which is how a test knows that its fault fired.
// Threading: thread-safe (one process-wide plan and counter).
#pragma once

#include <sys/types.h>

#include <memory>

#include "agent/io/engine.h"

namespace ferry::io {

// The engine with the process's fault plan around it, or `engine` itself when there is none.
std::unique_ptr<Engine> WithFaults(std::unique_ptr<Engine> engine);

// pread(2), pwrite(2), read(2) through the fault plan, for the file I/O of the data path that
// does not go through an engine (block hashing, deltas, in-place patches, content hashes): as
// the system calls (bytes, or -1 with errno set).
ssize_t Pread(int fd, void* buffer, size_t length, off_t offset);
ssize_t Pwrite(int fd, const void* buffer, size_t length, off_t offset);
ssize_t Read(int fd, void* buffer, size_t length);

// syncfs(2), fsync(2), fdatasync(2) through the fault plan: 0, or -1 with errno set.
int Syncfs(int fd);
int Fsync(int fd);
int Fdatasync(int fd);

}  // namespace ferry::io
