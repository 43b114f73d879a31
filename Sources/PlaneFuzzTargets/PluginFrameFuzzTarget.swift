import ContainerRuntime
import PlaneCore
import RuntimePluginProtocol

/// What a runtime plugin sends the drone: a byte stream of length-prefixed frames in any
/// chunking; every frame's message, and every payload through the decoder the drone would
/// apply to it (hello, handles, statuses, events, log lines, samples, specs, errors).
enum PluginFrameFuzzTarget {
    static let frames = FuzzTarget("plugin-frame", "PluginFrameDecoder in any chunking, PluginMessage.decode, and every PluginWire decoder on each payload.") { raw in
        var input = FuzzInput(raw)
        let sizes = [input.byte(), input.byte()]
        var decoder = PluginFrameDecoder()
        feeding: for piece in FuzzInput.pieces(input.rest(), sizes: sizes, maxPiece: 256) {
            decoder.feed(piece)
            do {
                while let payload = try decoder.next() {
                    guard let message = try? PluginMessage.decode(payload) else { continue }
                    switch message {
                    case .result(_, let value), .item(_, let value), .call(_, _, let value):
                        decodeEverything(value)
                    case .failure(_, let failure):
                        _ = PluginWire.runtimeError(failure, plugin: "fuzz")
                    case .end:
                        break
                    }
                    _ = JSONWriter.write(message.json)
                }
            } catch {
                break feeding
            }
        }
    }

    static func decodeEverything(_ value: JSONValue) {
        _ = try? PluginHelloResult(json: value)
        _ = try? PluginHello(json: value)
        _ = try? PluginWire.handle(value, runtime: "fuzz")
        _ = try? PluginWire.status(value)
        _ = try? PluginWire.event(value)
        _ = try? PluginWire.logLine(value)
        _ = try? PluginWire.sample(value)
        _ = try? PluginWire.address(value)
        if let spec = try? PluginWire.spec(value) {
            _ = try? spec.limits.validate()
            _ = spec.effectiveEnvironment
        }
    }
}
