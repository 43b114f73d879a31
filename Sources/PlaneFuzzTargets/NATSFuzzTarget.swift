@testable import NATS
import NIOCore

/// What a NATS server (or anything at its address) sends a Plane process: the protocol
/// parser in any chunking, the header blocks of `HMSG`, a JetStream delivery's
/// acknowledgement subject, and the servers an `INFO` advertises.
enum NATSFuzzTarget {
    static let protocolParser = FuzzTarget("nats-protocol", "NATSProtocolParser on any byte stream in any chunking; payloads never exceed what arrived; JetStream acknowledgement subjects; INFO's connect_urls into the server pool, which stays bounded.") { raw in
        var input = FuzzInput(raw)
        let sizes = [input.byte(), input.byte()]
        let payload = input.rest()
        var parser = NATSProtocolParser()
        var handedOut = 0
        let configured = NATSServerURL(host: "nats.example", requiresTLS: true, user: "u", password: "p")
        var pool = ServerPool(servers: [configured], baseWait: .milliseconds(1), maxWait: .milliseconds(2), jitter: 0)
        feeding: for piece in FuzzInput.pieces(payload, sizes: sizes, maxPiece: 128) {
            parser.feed(piece)
            do {
                while let operation = try parser.next() {
                    switch operation {
                    case .msg(let message):
                        handedOut += message.payload.readableBytes
                        _ = message.headers?.status
                        if let reply = message.replyTo, let ack = JetStreamAckSubject(reply) {
                            _ = ack.streamSequenceAfter(expectingConsumerSequence: ack.consumerSequence)
                        }
                    case .info(let info):
                        _ = pool.updateDiscovered(info.connectURLs, current: pool.servers.last ?? configured)
                        FuzzTarget.require(pool.servers.count <= 2 + ServerPool.maxDiscovered, "the server pool grew beyond its bound")
                        FuzzTarget.require(pool.servers.first == configured, "the configured server was dropped")
                    default:
                        break
                    }
                }
            } catch {
                break feeding
            }
        }
        FuzzTarget.require(handedOut <= payload.count, "payloads longer than the input")
        _ = try? NATSHeaders.parse(payload)
    }
}
