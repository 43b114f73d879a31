import NIOHTTP1

/// Header rewriting between client and backend (RFC 9110 §7.6.1): hop-by-hop headers
/// (`Connection`, the ones it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
/// `Upgrade`, `Transfer-Encoding`) are not forwarded, except `Connection: upgrade` +
/// `Upgrade` on an upgrade request and its `101` answer; the body framing is redone by
/// NIO's encoder (chunked stays chunked). `Host` reaches the backend unchanged, and the
/// request gets `X-Forwarded-For` (appended), `X-Forwarded-Proto` and `X-Forwarded-Host`.
public enum ForwardedHeaders {
    static let hopByHop: Set<String> = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "transfer-encoding"]

    /// Whether a request asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
    public static func isUpgrade(_ headers: HTTPHeaders) -> Bool {
        headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" } && headers.contains(name: "upgrade")
    }

    /// The headers sent to the backend for a client request.
    public static func upstreamRequest(_ headers: HTTPHeaders, clientAddress: String?, scheme: String, upgrade: Bool) -> HTTPHeaders {
        var result = strippingHopByHop(headers, keepUpgrade: upgrade)
        if let clientAddress {
            let previous = headers["x-forwarded-for"].joined(separator: ", ")
            result.replaceOrAdd(name: "X-Forwarded-For", value: previous.isEmpty ? clientAddress : previous + ", " + clientAddress)
        }
        result.replaceOrAdd(name: "X-Forwarded-Proto", value: scheme)
        if let host = headers.first(name: "host") { result.replaceOrAdd(name: "X-Forwarded-Host", value: host) }
        return result
    }

    /// The headers sent to the client for a backend response.
    public static func downstreamResponse(_ headers: HTTPHeaders, upgrade: Bool) -> HTTPHeaders {
        strippingHopByHop(headers, keepUpgrade: upgrade)
    }

    static func strippingHopByHop(_ headers: HTTPHeaders, keepUpgrade: Bool) -> HTTPHeaders {
        var named = hopByHop
        for token in headers[canonicalForm: "connection"] { named.insert(token.lowercased()) }
        let chunked = headers[canonicalForm: "transfer-encoding"].last?.lowercased() == "chunked"
        var result = HTTPHeaders()
        for (name, value) in headers where !named.contains(name.lowercased()) {
            result.add(name: name, value: value)
        }
        if chunked, !result.contains(name: "content-length") { result.add(name: "Transfer-Encoding", value: "chunked") }
        if keepUpgrade, let upgrade = headers.first(name: "upgrade") {
            result.add(name: "Connection", value: "upgrade")
            result.add(name: "Upgrade", value: upgrade)
        }
        return result
    }
}
