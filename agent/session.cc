#include "agent/session.h"

#include "base/bounds.h"

namespace ferry {

using protocol::MessageType;

static const char* kAgentName = "ferry 0.1.0";

Status ReceiveExpected(Channel& channel, MessageType type, int timeout_ms, Frame* frame) {
  FERRY_RETURN_IF_ERROR(channel.Receive(frame, timeout_ms));
  if (frame->type != type) {
    return UnexpectedFrame(*frame, protocol::MessageTypeName(static_cast<uint8_t>(type)),
                           channel.peer_name());
  }
  return Status::Ok();
}

Result<protocol::Welcome> SayHello(Channel& channel, WireCompression compress) {
  protocol::Hello hello;
  hello.capabilities = protocol::kCapEndOnStream | (compress == WireCompression::kNone ? 0 : protocol::kCapZstd);
  hello.agent = kAgentName;
  Frame frame;
  Status said = channel.SendMessage(MessageType::kHello, hello);
  if (said.ok()) said = ReceiveExpected(channel, MessageType::kWelcome, kHandshakeTimeoutMs, &frame);
  if (said.code() == Code::kNetwork && !channel.encrypted()) {
    // Connected, then cut at the first frame: what a daemon that requires TLS does to plaintext.
    return Status::Make(Code::kNetwork, said.message() + " (a daemon that requires TLS closes plaintext "
                                        "connections at once: pass its --psk-file, or --tls-cert, --tls-key and --tls-ca)",
                        said.error_number());
  }
  FERRY_RETURN_IF_ERROR(said);
  Result<protocol::Welcome> welcome = protocol::Welcome::Decode(frame.payload);
  if (!welcome.ok()) return welcome.status();
  if (welcome->version < protocol::kProtocolVersionMin || welcome->version > protocol::kProtocolVersion) {
    return Status::Protocol("daemon " + channel.peer_name() + " chose protocol version " +
                            std::to_string(welcome->version) + ", which this ferry does not speak");
  }
  if ((welcome->capabilities & ~hello.capabilities) != 0) {
    return Status::Protocol("daemon " + channel.peer_name() + " accepted capabilities it was not offered");
  }
  channel.SetCapabilities(welcome->capabilities);
  channel.SetCompression((welcome->capabilities & protocol::kCapZstd) != 0
                             ? std::optional<int>(kZstdLevelDefault) : std::nullopt);
  return welcome;
}

Result<protocol::OpenOk> OpenSession(Channel& channel, const protocol::Open& open, WireCompression compress) {
  Result<protocol::Welcome> welcome = SayHello(channel, compress);
  if (!welcome.ok()) return welcome.status();
  Frame frame;
  protocol::Open with_content = open;
  if (compress == WireCompression::kAll) with_content.options |= protocol::kOptCompressData;
  channel.SetCompressContent(compress == WireCompression::kAll);
  FERRY_RETURN_IF_ERROR(channel.SendMessage(MessageType::kOpen, with_content));
  FERRY_RETURN_IF_ERROR(ReceiveExpected(channel, MessageType::kOpenOk, kIdleTimeoutMs, &frame));
  Result<protocol::OpenOk> ok = protocol::OpenOk::Decode(frame.payload);
  if (ok.ok() && ok->streams > open.streams) {
    return Status::Protocol("daemon " + channel.peer_name() + " granted more data streams than were asked for");
  }
  return ok;
}

Status JoinSession(Channel& channel, const protocol::Join& join, WireCompression compress) {
  Result<protocol::Welcome> welcome = SayHello(channel, compress);
  if (!welcome.ok()) return welcome.status();
  channel.SetCompressContent(compress == WireCompression::kAll);
  FERRY_RETURN_IF_ERROR(channel.SendMessage(MessageType::kJoin, join));
  Frame frame;
  return ReceiveExpected(channel, MessageType::kJoined, kHandshakeTimeoutMs, &frame);
}

Result<protocol::Open> AcceptSession(Channel& channel) {
  FERRY_RETURN_IF_ERROR(AcceptHello(channel));
  Frame frame;
  FERRY_RETURN_IF_ERROR(channel.Receive(&frame, kHandshakeTimeoutMs));
  return AcceptOpen(channel, frame);
}

Status AcceptHello(Channel& channel) {
  Frame frame;
  FERRY_RETURN_IF_ERROR(ReceiveExpected(channel, MessageType::kHello, kHandshakeTimeoutMs, &frame));
  Result<protocol::Hello> hello = protocol::Hello::Decode(frame.payload);
  if (!hello.ok()) return hello.status();
  if (hello->version_max < protocol::kProtocolVersionMin || hello->version_min > protocol::kProtocolVersion) {
    Status s = Status::Protocol("client " + channel.peer_name() + " speaks protocol versions " +
                                std::to_string(hello->version_min) + "-" + std::to_string(hello->version_max) +
                                ", this daemon speaks " + std::to_string(protocol::kProtocolVersionMin) +
                                "-" + std::to_string(protocol::kProtocolVersion));
    channel.SendError(s);
    return s;
  }
  protocol::Welcome welcome;
  welcome.version = std::min(hello->version_max, protocol::kProtocolVersion);
  welcome.capabilities = hello->capabilities & protocol::kCapsAll;
  welcome.agent = kAgentName;
  FERRY_RETURN_IF_ERROR(channel.SendMessage(MessageType::kWelcome, welcome));
  channel.SetCapabilities(welcome.capabilities);
  channel.SetCompression((welcome.capabilities & protocol::kCapZstd) != 0
                             ? std::optional<int>(kZstdLevelDefault) : std::nullopt);
  return Status::Ok();
}

Result<protocol::Open> AcceptOpen(Channel& channel, const Frame& frame) {
  if (frame.type != MessageType::kOpen) return UnexpectedFrame(frame, "OPEN", channel.peer_name());
  Result<protocol::Open> open = protocol::Open::Decode(frame.payload);
  if (open.ok()) {
    channel.SetCompressContent((open->options & protocol::kOptCompressData) != 0);
    channel.SetContentLevel(static_cast<int>(open->compress_level));
  }
  return open;
}

}  // namespace ferry
