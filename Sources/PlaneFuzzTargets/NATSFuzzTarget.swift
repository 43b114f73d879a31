@testable import NATS
import NIOCore

/// What a NATS server (or anything at its address) sends a Plane process: the protocol
/// parser in any chunking, and the header blocks of `HMSG`.
enum NATSFuzzTarget {
    static let protocolParser = FuzzTarget("nats-protocol", "NATSProtocolParser on any byte stream in any chunking; payloads never exceed what arrived.") { raw in
        var input = FuzzInput(raw)
        let sizes = [input.byte(), input.byte()]
        let payload = input.rest()
        var parser = NATSProtocolParser()
        var handedOut = 0
        feeding: for piece in FuzzInput.pieces(payload, sizes: sizes, maxPiece: 128) {
            parser.feed(piece)
            do {
                while let operation = try parser.next() {
                    if case .msg(let message) = operation {
                        handedOut += message.payload.readableBytes
                        _ = message.headers?.status
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
