#include "protocol/compression.h"

// ZSTD_getFrameHeader: the one-shot decoder ignores ZSTD_d_windowLogMax, so the window is
// checked here. The symbol is exported by the shared libzstd.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "base/bounds.h"
#include "base/check.h"

namespace ferry::protocol {

struct Compressor::Context {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ~Context() { ZSTD_freeCCtx(cctx); }
};

Compressor::Compressor(int level) : context_(std::make_unique<Context>()), level_(level) {
  CHECK(context_->cctx != nullptr);
  size_t r = ZSTD_CCtx_setParameter(context_->cctx, ZSTD_c_compressionLevel, level_);
  CHECK(!ZSTD_isError(r));
  // Keep the window within what every ferry decompressor accepts.
  r = ZSTD_CCtx_setParameter(context_->cctx, ZSTD_c_windowLog, kZstdWindowLogMax);
  CHECK(!ZSTD_isError(r));
  r = ZSTD_CCtx_setParameter(context_->cctx, ZSTD_c_checksumFlag, 0);  // frames carry xxh3
  CHECK(!ZSTD_isError(r));
}
Compressor::~Compressor() = default;

void Compressor::SetLevel(int level) {
  if (level == level_) return;
  level_ = level;
  size_t r = ZSTD_CCtx_setParameter(context_->cctx, ZSTD_c_compressionLevel, level_);
  CHECK(!ZSTD_isError(r));
}

bool Compressor::CompressIfSmaller(std::string_view input, std::string* out) {
  CHECK(input.size() <= kFramePayloadMaxBytes);
  if (input.size() < kCompressMinBytes) return false;
  // A bound of input.size() - 1 makes zstd stop as soon as the output stops paying.
  out->resize(input.size() - 1);
  size_t n = ZSTD_compress2(context_->cctx, out->data(), out->size(), input.data(), input.size());
  if (ZSTD_isError(n)) return false;  // dstSize_tooSmall: not compressible enough
  out->resize(n);
  return true;
}

struct Decompressor::Context {
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  ~Context() { ZSTD_freeDCtx(dctx); }
};

Decompressor::Decompressor() : context_(std::make_unique<Context>()) {
  CHECK(context_->dctx != nullptr);
  size_t r = ZSTD_DCtx_setParameter(context_->dctx, ZSTD_d_windowLogMax, kZstdWindowLogMax);
  CHECK(!ZSTD_isError(r));
}
Decompressor::~Decompressor() = default;

Status Decompressor::Decompress(std::string_view input, size_t expected_size, std::string* out) {
  CHECK(expected_size <= kFramePayloadMaxBytes);
  // Exactly one zstd frame: zstd would also decode frames concatenated after the first, whose
  // headers nothing here has checked.
  ZSTD_frameHeader zstd_header;
  if (ZSTD_getFrameHeader(&zstd_header, input.data(), input.size()) != 0 ||
      zstd_header.frameType != ZSTD_frame ||
      ZSTD_findFrameCompressedSize(input.data(), input.size()) != input.size()) {
    return Status::Corruption("zstd payload is not exactly one zstd frame");
  }
  if (zstd_header.windowSize > (uint64_t{1} << kZstdWindowLogMax)) {
    return Status::Corruption("zstd payload window of " + std::to_string(zstd_header.windowSize) +
                              " bytes exceeds the limit of 2^" + std::to_string(kZstdWindowLogMax));
  }
  unsigned long long claimed = zstd_header.frameContentSize;
  if (claimed != ZSTD_CONTENTSIZE_UNKNOWN && claimed != expected_size) {
    return Status::Corruption("zstd payload claims " + std::to_string(claimed) +
                              " bytes, frame header says " + std::to_string(expected_size));
  }
  out->resize(expected_size);
  ZSTD_DCtx_reset(context_->dctx, ZSTD_reset_session_only);
  // The output buffer is exactly expected_size: a payload that expands further fails here
  // instead of growing anything.
  size_t n = ZSTD_decompressDCtx(context_->dctx, out->data(), out->size(), input.data(), input.size());
  if (ZSTD_isError(n)) {
    return Status::Corruption(std::string("zstd payload does not decompress: ") + ZSTD_getErrorName(n));
  }
  if (n != expected_size) {
    return Status::Corruption("zstd payload expands to " + std::to_string(n) + " bytes, expected " +
                              std::to_string(expected_size));
  }
  return Status::Ok();
}

}  // namespace ferry::protocol
