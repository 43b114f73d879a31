/// A server address: `nats://[user[:password]@]host[:port]` (port 4222 by default);
/// `tls://` requires TLS. A user without a password is a token (`nats://TOKEN@host`), as
/// Plane's CLI and other NATS clients read it. IPv6 hosts are written in brackets.
public struct NATSServerURL: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var requiresTLS: Bool
    public var user: String?
    public var password: String?
    /// The name the server's TLS certificate is checked against (and sent as SNI) when
    /// `host` is an IP address: a server the cluster advertised by its address is verified
    /// as the configured host that advertised it was (as nats.go does), since certificates
    /// seldom name addresses. Nil: an IP address is checked against the certificate's
    /// IP addresses.
    public var tlsName: String?

    public static let defaultPort = 4222

    public init(host: String, port: Int = NATSServerURL.defaultPort, requiresTLS: Bool = false, user: String? = nil, password: String? = nil) {
        self.host = host
        self.port = port
        self.requiresTLS = requiresTLS
        self.user = user
        self.password = password
    }

    public init(_ text: String) throws(NATSError) {
        func fail(_ why: String) -> NATSError {
            NATSError(.invalidConfiguration, "NATS server address '\(text)' is invalid: \(why). Write it as nats://host:port, e.g. nats://127.0.0.1:4222.")
        }
        var rest = Substring(text.trimmingSpaces)
        requiresTLS = false
        if let schemeEnd = rest.range(of: "://") {
            let scheme = rest[..<schemeEnd.lowerBound].lowercased()
            switch scheme {
            case "nats": break
            case "tls": requiresTLS = true
            default: throw fail("unknown scheme '\(scheme)' (use nats:// or tls://)")
            }
            rest = rest[schemeEnd.upperBound...]
        }
        if let slash = rest.firstIndex(of: "/") {
            guard rest[slash...].allSatisfy({ $0 == "/" }) else { throw fail("it has a path") }
            rest = rest[..<slash]
        }
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = String(userInfo[..<colon]).percentDecoded
                password = String(userInfo[userInfo.index(after: colon)...]).percentDecoded
            } else {
                user = String(userInfo).percentDecoded
            }
        }
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw fail("an IPv6 address lacks ']'") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw fail("unexpected text after ']'") }
                portText = after.dropFirst()
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            portText = rest[rest.index(after: colon)...]
        } else {
            host = String(rest)
        }
        if host.isEmpty { throw fail("the host is missing") }
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else { throw fail("port '\(portText)' is not a number from 1 to 65535") }
            port = p
        } else {
            port = Self.defaultPort
        }
    }

    /// `host` is an IP address (v4 or v6), not a name.
    public var hostIsIP: Bool {
        host.contains(":") || (!host.isEmpty && host.allSatisfy { $0.isASCII && ($0.isNumber || $0 == ".") })
    }

    /// The name to verify the server's TLS certificate against (and send as SNI): the host,
    /// or for an IP address the `tlsName` it was given, if any.
    var tlsServerName: String? { hostIsIP ? tlsName : host }

    /// The URL without credentials, for logs.
    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(requiresTLS ? "tls" : "nats")://\(h):\(port)"
    }

    /// Same server (host and port), whatever the credentials.
    func sameServer(as other: NATSServerURL) -> Bool { host == other.host && port == other.port }
}

extension String {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }

    var percentDecoded: String {
        guard contains("%") else { return self }
        var bytes: [UInt8] = []
        var iterator = Array(utf8).makeIterator()
        while let b = iterator.next() {
            if b == UInt8(ascii: "%"), let h = iterator.next(), let l = iterator.next(),
               let v = UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16) {
                bytes.append(v)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
