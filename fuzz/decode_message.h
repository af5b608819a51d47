// The fuzz targets' shared step: decode a payload as the message type `type` names (every
// decoder of protocol/messages.h), and re-encode what decoded (the encoders must take any value
// a decoder accepts). Unknown types are ignored, as the channel refuses them before decoding.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/messages.h"

namespace ferry_fuzz {

template <typename Message>
void DecodeAndEncode(std::string_view payload) {
  ferry::Result<Message> m = Message::Decode(payload);
  if (!m.ok()) return;
  std::string out;
  m->Encode(&out);
}

inline void DecodeMessage(uint8_t type, std::string_view payload) {
  namespace p = ferry::protocol;
  using T = p::MessageType;
  switch (static_cast<T>(type)) {
    case T::kHello: return DecodeAndEncode<p::Hello>(payload);
    case T::kWelcome: return DecodeAndEncode<p::Welcome>(payload);
    case T::kOpen: return DecodeAndEncode<p::Open>(payload);
    case T::kOpenOk: return DecodeAndEncode<p::OpenOk>(payload);
    case T::kJoin: return DecodeAndEncode<p::Join>(payload);
    case T::kEntries: {
      ferry::Result<p::Entries> m = p::Entries::Decode(payload, 0);
      if (m.ok()) {
        std::string out;
        m->Encode(&out);
      }
      return;
    }
    case T::kEntriesEnd: return DecodeAndEncode<p::EntriesEnd>(payload);
    case T::kNeed: return DecodeAndEncode<p::Need>(payload);
    case T::kNeedEnd:
    case T::kDone: return DecodeAndEncode<p::Count>(payload);
    case T::kData: return DecodeAndEncode<p::Data>(payload);
    case T::kHashes: return DecodeAndEncode<p::Hashes>(payload);
    case T::kWant: return DecodeAndEncode<p::Want>(payload);
    case T::kPatch: return DecodeAndEncode<p::Patch>(payload);
    case T::kHole: return DecodeAndEncode<p::Hole>(payload);
    case T::kSignature:
    case T::kDelta: return DecodeAndEncode<p::Piece>(payload);
    case T::kFileEnd: return DecodeAndEncode<p::FileEnd>(payload);
    case T::kItems: return DecodeAndEncode<p::Items>(payload);
    case T::kCommit: return DecodeAndEncode<p::Commit>(payload);
    case T::kError: return DecodeAndEncode<p::Error>(payload);
    case T::kKeepalive:
    case T::kJoined: return;
  }
  switch (static_cast<p::BenchType>(type)) {
    case p::BenchType::kBenchOpen: return DecodeAndEncode<p::BenchOpen>(payload);
    case p::BenchType::kBenchReady: return DecodeAndEncode<p::BenchReady>(payload);
    case p::BenchType::kBenchData: return DecodeAndEncode<p::BenchData>(payload);
    case p::BenchType::kBenchEnd: return DecodeAndEncode<p::BenchEnd>(payload);
    case p::BenchType::kBenchResult: return DecodeAndEncode<p::BenchResult>(payload);
  }
}

}  // namespace ferry_fuzz
