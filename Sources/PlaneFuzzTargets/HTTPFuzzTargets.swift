import NIOCore
import PlaneCore
@testable import PlaneProxy

/// The proxy's HTTP/1 framing, as clients (requests) and backends (responses) can drive it:
/// bytes in any chunking through `HTTP1Parser`, and every head through what the proxy does
/// with it (routing, rewriting into memory reserved for it).
enum HTTPFuzzTargets {
    static let route = RouteTable.Route(backendID: "abc", address: "127.0.0.1:1", bearerToken: "token")
    static let router = ProxyRouter(cluster: "plane.test", allowPathRouting: true)

    static let request = FuzzTarget("http-request", "Requests in any chunking: parsed, routed, rewritten for the backend; never more out than in.") { raw in
        var input = FuzzInput(raw)
        let sizes = [input.byte(), input.byte(), input.byte()]
        let flags = input.byte()
        let payload = input.rest()
        var parser = HTTP1Parser(kind: .request, maxHeadBytes: 1024 + Int(flags & 0x0F) * 1024, maxHeaderCount: 8 + Int(flags >> 4) * 8)
        parser.decodeChunks = flags & 0x80 != 0
        var handedOut = 0
        feeding: for piece in FuzzInput.pieces(payload, sizes: sizes) {
            parser.append(ByteBuffer(bytes: piece))
            do {
                while let event = try parser.next() {
                    switch event {
                    case .head(let head):
                        handedOut += head.bytes.readableBytes
                        let subdomain = head.withFirstValue(.host) { $0.flatMap { router.subdomain(ofHost: $0) } }
                        let request = ProxyRouter.Request(host: nil, uri: head.originTarget, authorization: head.values(.authorization), cookies: head.values(.cookie))
                        let decision = router.decide(request, subdomain: subdomain, lookup: { $0 == "abc" ? route : nil })
                        let target: String
                        if case .forward(let forwarded) = decision { target = forwarded.uri } else { target = head.originTarget }
                        let capacity = ForwardedHeaders.requestCapacity(head, target: target, clientAddress: "127.0.0.1", scheme: "https")
                        var out = ByteBufferAllocator().buffer(capacity: capacity)
                        ForwardedHeaders.writeUpstreamRequest(head, target: target, clientAddress: "127.0.0.1", scheme: "https", upgrade: head.isUpgrade, into: &out)
                        FuzzTarget.require(out.readableBytes <= capacity, "a rewritten request head outgrew its capacity")
                        _ = (head.isKeepAlive, head.minorVersion, head.hasToken("100-continue", in: .expect))
                    case .body(let body):
                        handedOut += body.readableBytes
                    case .end:
                        break
                    }
                }
            } catch {
                break feeding
            }
        }
        _ = parser.inputEnded()
        FuzzTarget.require(handedOut <= payload.count, "the parser handed out more bytes than it was given")
    }

    static let response = FuzzTarget("http-response", "Backend responses in any chunking: parsed and rewritten for the client (HEAD, HTTP/1.0 de-chunking included).") { raw in
        var input = FuzzInput(raw)
        let sizes = [input.byte(), input.byte(), input.byte()]
        let flags = input.byte()
        let payload = input.rest()
        var parser = HTTP1Parser(kind: .response, maxHeadBytes: 1024 + Int(flags & 0x0F) * 1024, maxHeaderCount: 8 + Int(flags >> 4) * 8)
        parser.decodeChunks = flags & 0x80 != 0
        parser.answersHEAD = flags & 0x40 != 0
        var handedOut = 0
        feeding: for piece in FuzzInput.pieces(payload, sizes: sizes) {
            parser.append(ByteBuffer(bytes: piece))
            do {
                while let event = try parser.next() {
                    switch event {
                    case .head(let head):
                        handedOut += head.bytes.readableBytes
                        let capacity = ForwardedHeaders.responseCapacity(head)
                        var out = ByteBufferAllocator().buffer(capacity: capacity)
                        let connection: ForwardedHeaders.ConnectionHeader = head.status == 101 ? .upgrade : (flags & 0x20 != 0 ? .close : .none)
                        ForwardedHeaders.writeDownstreamResponse(head, connection: connection, keepTransferEncoding: !parser.decodeChunks, into: &out)
                        FuzzTarget.require(out.readableBytes <= capacity, "a rewritten response head outgrew its capacity")
                        if parser.hasSwitchedProtocols {
                            handedOut += parser.takeRemaining().readableBytes
                            break feeding
                        }
                    case .body(let body):
                        handedOut += body.readableBytes
                    case .end:
                        parser.answersHEAD = flags & 0x40 != 0
                    }
                }
            } catch {
                break feeding
            }
        }
        if parser.inputEnded() == .completedMessage { _ = try? parser.next() }
        FuzzTarget.require(handedOut <= payload.count, "the parser handed out more bytes than it was given")
    }
}
