import AsyncHTTPClient
import ContainerRuntime
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PlaneCore
import Synchronization

/// The OCI distribution API v2, read side: manifests and blobs, with the bearer-token
/// challenge flow and basic credentials. Every manifest fetched by digest and every blob is
/// checked against its digest; plain HTTP is used only for registries configured insecure.
final class RegistryClient: Sendable {
    let insecureRegistries: Set<String>
    let client: HTTPClient
    let logger: Logger
    /// The slowest a registry may send a body.
    let pace: TransferPace
    /// Bearer tokens by registry, scope and the credentials they were got with (a token got
    /// with credentials is never used for a pull without them), reused until they fail.
    private let tokens = Mutex<[String: String]>([:])

    init(insecureRegistries: Set<String>, client: HTTPClient, logger: Logger, pace: TransferPace = TransferPace()) {
        self.insecureRegistries = insecureRegistries
        self.client = client
        self.logger = logger
        self.pace = pace
    }

    /// A body of at most `maxBytes`, sent at `pace` or faster: `NIOTooManyBytesError` beyond
    /// the size, a `RuntimeError` naming `pull_min_bytes_per_sec` when too slow (`what` says
    /// what was being read, from where).
    func readBody(_ body: HTTPClientResponse.Body, upTo maxBytes: Int, what: @autoclosure () -> String) async throws -> ByteBuffer {
        var collected = ByteBuffer()
        var meter = TransferPace.Meter(pace)
        for try await var chunk in body {
            let count = chunk.readableBytes
            guard count <= maxBytes - collected.readableBytes else { throw NIOTooManyBytesError(maxBytes: maxBytes) }
            collected.writeBuffer(&chunk)
            try checkPace(&meter, chunk: count, what: what())
        }
        return collected
    }

    /// Counts `count` bytes into `meter`; throws when the window just ended fell short.
    func checkPace(_ meter: inout TransferPace.Meter, chunk count: Int, what: @autoclosure () -> String) throws(RuntimeError) {
        guard let (bytes, seconds) = meter.arrived(count) else { return }
        throw OCIImageLimits.exceeded("pull_min_bytes_per_sec", "\(what()) came at \(bytes) bytes in \(seconds) s, slower than \(pace.minimumBytesPerSecond) bytes/s; the transfer was cut")
    }

    struct Answer: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    func baseURL(_ reference: RegistryReference) -> String {
        let scheme = insecureRegistries.contains(reference.registry) ? "http" : "https"
        return "\(scheme)://\(reference.apiHost)/v2/\(reference.repository)"
    }

    /// The registry's error text: `{"errors":[{"code","message"}]}`, or the start of the body.
    static func errorText(_ answer: Answer) -> String {
        let bytes = Array(answer.body.readableBytesView.prefix(2000))
        if let json = try? JSONParser.parse(bytes), let errors = json.objectValue?["errors"]?.arrayValue, !errors.isEmpty {
            let texts = errors.compactMap { error -> String? in
                guard let object = error.objectValue else { return nil }
                return [object["code"]?.stringValue, object["message"]?.stringValue].compactMap { $0 }.joined(separator: ": ")
            }
            return "HTTP \(answer.status) \(texts.joined(separator: "; "))"
        }
        let text = String(decoding: bytes.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return "HTTP \(answer.status)" + (text.isEmpty ? "" : " \(text)")
    }

    private func unreachable(_ reference: RegistryReference, _ error: any Error) -> RuntimeError {
        var hint = ""
        if !insecureRegistries.contains(reference.registry), "\(error)".lowercased().contains("ssl") || "\(error)".lowercased().contains("tls") {
            hint = " If this registry speaks plain HTTP, list it in [agent.oci] insecure_registries."
        }
        return RuntimeError(.imageUnavailable, "Cannot reach registry \(reference.registry) for image \(reference).\(hint)", underlying: error)
    }

    /// GET with the registry's auth dance: on 401, a bearer token (from the challenge's realm,
    /// with the credentials when given) or basic credentials, then the request again.
    /// `body` consumes a 200 answer's body stream (for blobs); otherwise it is collected.
    func get(_ url: String, reference: RegistryReference, credentials: RegistryCredentials?, accept: [String] = [],
             timeout: Duration) async throws(RuntimeError) -> (HTTPClientResponse, HTTPHeaders) {
        let scope = "repository:\(reference.repository):pull"
        let tokenKey = "\(reference.registry) \(scope) \(ImageAccessScope(credentials, registry: reference.registry).rawValue)"
        var authorization = tokens.withLock { $0[tokenKey] }.map { "Bearer \($0)" }
        for attempt in 0..<2 {
            var request = HTTPClientRequest(url: url)
            if !accept.isEmpty { request.headers.add(name: "Accept", value: accept.joined(separator: ", ")) }
            if let authorization { request.headers.add(name: "Authorization", value: authorization) }
            let response: HTTPClientResponse
            do {
                response = try await client.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000))
            } catch {
                throw unreachable(reference, error)
            }
            guard response.status == .unauthorized, attempt == 0 else { return (response, response.headers) }
            let challengeHeader = response.headers["WWW-Authenticate"].first ?? ""
            _ = try? await readBody(response.body, upTo: 1 << 16, what: "The auth challenge of registry \(reference.registry)")
            guard let challenge = AuthChallenge(challengeHeader) else {
                throw RuntimeError(.imageUnavailable, "Registry \(reference.registry) refused image \(reference) (HTTP 401) without an auth challenge this client understands: '\(challengeHeader)'.")
            }
            switch challenge.scheme {
            case "basic":
                guard let credentials else {
                    throw RuntimeError(.imageUnavailable, "Registry \(reference.registry) needs credentials for image \(reference); pass them in the spawn request's credentials.")
                }
                authorization = "Basic " + Data("\(credentials.username):\(credentials.password)".utf8).base64EncodedString()
            default:
                let token = try await fetchToken(challenge, scope: challenge.parameters["scope"] ?? scope, reference: reference, credentials: credentials)
                tokens.withLock { $0[tokenKey] = token }
                authorization = "Bearer \(token)"
            }
        }
        preconditionFailure("unreachable: the loop returns or throws")
    }

    private func fetchToken(_ challenge: AuthChallenge, scope: String, reference: RegistryReference, credentials: RegistryCredentials?) async throws(RuntimeError) -> String {
        guard let realm = challenge.parameters["realm"], var components = URLComponents(string: realm) else {
            throw RuntimeError(.imageUnavailable, "Registry \(reference.registry) asked for a bearer token without a realm to get it from.")
        }
        var query = components.queryItems ?? []
        if let service = challenge.parameters["service"] { query.append(URLQueryItem(name: "service", value: service)) }
        query.append(URLQueryItem(name: "scope", value: scope))
        components.queryItems = query
        guard let url = components.string else { throw RuntimeError(.imageUnavailable, "Registry \(reference.registry) gave an unusable token realm '\(realm)'.") }
        // Credentials travel only over HTTPS, or in plain HTTP to the registry's own host
        // when that registry is configured insecure.
        if credentials != nil, components.scheme?.lowercased() != "https" {
            let sameInsecureHost = components.host.map { host in
                insecureRegistries.contains(reference.registry) && (reference.apiHost == host || reference.apiHost.hasPrefix(host + ":"))
            } ?? false
            guard sameInsecureHost else {
                throw RuntimeError(.imageUnavailable, "Registry \(reference.registry) sends credentials for image \(reference) to \(components.scheme ?? "?")://\(components.host ?? "?"), which is not HTTPS; they are not sent.")
            }
        }
        var request = HTTPClientRequest(url: url)
        if let credentials {
            request.headers.add(name: "Authorization", value: "Basic " + Data("\(credentials.username):\(credentials.password)".utf8).base64EncodedString())
        }
        let answer: Answer
        do {
            let response = try await client.execute(request, timeout: .seconds(30))
            answer = Answer(status: Int(response.status.code), headers: response.headers,
                            body: try await readBody(response.body, upTo: 1 << 20, what: "The answer of the token service of registry \(reference.registry)"))
        } catch let error as RuntimeError {
            throw error
        } catch {
            throw RuntimeError(.imageUnavailable, "Cannot reach the token service \(realm) of registry \(reference.registry) for image \(reference).", underlying: error)
        }
        guard answer.status == 200 else {
            let why = answer.status == 401 || answer.status == 403
                ? (credentials == nil ? "it needs credentials; pass them in the spawn request's credentials" : "the credentials were refused (wrong user name or password?)")
                : "it answered \(Self.errorText(answer))"
            throw RuntimeError(.imageUnavailable, "The token service of registry \(reference.registry) gave no token for image \(reference): \(why).", cause: Self.errorText(answer))
        }
        let json = try? JSONParser.parse(Array(answer.body.readableBytesView))
        guard let token = json?.objectValue?["token"]?.stringValue ?? json?.objectValue?["access_token"]?.stringValue, !token.isEmpty else {
            throw RuntimeError(.imageUnavailable, "The token service of registry \(reference.registry) answered without a token for image \(reference).")
        }
        return token
    }

    /// A manifest or index by tag or digest: its bytes, media type and digest (checked
    /// against the requested digest, or the registry's `Docker-Content-Digest`).
    func manifest(_ reference: RegistryReference, at tagOrDigest: String, credentials: RegistryCredentials?,
                  maxBytes: Int = OCIImageLimits().maxManifestBytes) async throws(RuntimeError) -> (data: Data, mediaType: String?, digest: OCIDigest) {
        let (response, headers) = try await get("\(baseURL(reference))/manifests/\(tagOrDigest)", reference: reference, credentials: credentials,
                                                accept: OCIMediaType.manifestAccept, timeout: .seconds(60))
        let body: ByteBuffer
        do {
            body = try await readBody(response.body, upTo: maxBytes, what: "The manifest of image \(reference) from \(reference.registry)")
        } catch let error as RuntimeError {
            throw error
        } catch let error as NIOTooManyBytesError {
            throw OCIImageLimits.exceeded("max_manifest_bytes", "Registry \(reference.registry) sent a manifest for image \(reference) of more than \(maxBytes) bytes (\(error))")
        } catch {
            throw unreachable(reference, error)
        }
        let answer = Answer(status: Int(response.status.code), headers: headers, body: body)
        guard answer.status == 200 else {
            let missing = answer.status == 404 ? " (no such repository or tag)" : ""
            throw RuntimeError(.imageUnavailable, "Registry \(reference.registry) has no manifest for image \(reference)\(missing): \(Self.errorText(answer)).")
        }
        let bytes = Array(body.readableBytesView)
        let digest = OCIDigest.sha256(of: bytes)
        if let expected = try? OCIDigest(tagOrDigest) {
            var hasher = OCIDigest.Hasher(expected.algorithm)
            hasher.update(bytes)
            guard hasher.finalize() == expected else {
                throw RuntimeError(.imageUnavailable, "Registry \(reference.registry) sent a manifest for image \(reference) that does not match its digest \(expected); refusing it.")
            }
            return (Data(bytes), headers["Content-Type"].first.map(Self.mediaType), expected)
        }
        if let header = headers["Docker-Content-Digest"].first, let announced = try? OCIDigest(header), announced.algorithm == .sha256, announced != digest {
            throw RuntimeError(.imageUnavailable, "Registry \(reference.registry) sent a manifest for image \(reference) whose content does not match its announced digest \(announced); refusing it.")
        }
        return (Data(bytes), headers["Content-Type"].first.map(Self.mediaType), digest)
    }

    static func mediaType(_ contentType: String) -> String {
        String(contentType.split(separator: ";").first ?? "").trimmingCharacters(in: .whitespaces)
    }

    /// Streams the blob `descriptor` into `path` (created), checking size and digest on the
    /// way; a mismatch removes the file and fails.
    func downloadBlob(_ descriptor: OCIDescriptor, of reference: RegistryReference, credentials: RegistryCredentials?, to path: String) async throws(RuntimeError) {
        let (response, headers) = try await get("\(baseURL(reference))/blobs/\(descriptor.digest)", reference: reference, credentials: credentials, timeout: .seconds(60))
        guard response.status == .ok else {
            let body = (try? await readBody(response.body, upTo: 1 << 16, what: "An error answer of registry \(reference.registry)")) ?? ByteBuffer()
            throw RuntimeError(.imageUnavailable, "Registry \(reference.registry) did not send blob \(descriptor.digest) of image \(reference): \(Self.errorText(Answer(status: Int(response.status.code), headers: headers, body: body))).")
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RuntimeError(.internal, "Cannot create \(path): \(String(cString: strerror(errno))).") }
        var hasher = OCIDigest.Hasher(descriptor.digest.algorithm)
        var received: Int64 = 0
        var meter = TransferPace.Meter(pace)
        do {
            defer { close(fd) }
            for try await chunk in response.body {
                received += Int64(chunk.readableBytes)
                try checkPace(&meter, chunk: chunk.readableBytes, what: "Blob \(descriptor.digest) of image \(reference) from \(reference.registry)")
                guard received <= descriptor.size else { break }
                try chunk.withUnsafeReadableBytes { raw in
                    hasher.update(raw)
                    var written = 0
                    while written < raw.count {
                        let step = write(fd, raw.baseAddress! + written, raw.count - written)
                        if step < 0 {
                            if errno == EINTR { continue }
                            throw RuntimeError(.internal, "Cannot write \(path): \(String(cString: strerror(errno))).")
                        }
                        written += step
                    }
                }
            }
        } catch let error as RuntimeError {
            unlink(path)
            throw error
        } catch {
            unlink(path)
            throw RuntimeError(.imageUnavailable, "Downloading blob \(descriptor.digest) of image \(reference) from \(reference.registry) failed.", underlying: error)
        }
        guard received == descriptor.size else {
            unlink(path)
            throw RuntimeError(.imageUnavailable, "Blob \(descriptor.digest) of image \(reference) from \(reference.registry) has \(received) bytes or more, not the \(descriptor.size) its manifest says; refusing it.")
        }
        guard hasher.finalize() == descriptor.digest else {
            unlink(path)
            throw RuntimeError(.imageUnavailable, "Blob \(descriptor.digest) of image \(reference) from \(reference.registry) does not match its digest; refusing it (nothing was run).")
        }
    }
}

/// A `WWW-Authenticate` challenge: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
struct AuthChallenge: Sendable, Hashable {
    var scheme: String
    var parameters: [String: String]

    init?(_ header: String) {
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        guard let space = trimmed.firstIndex(of: " ") else {
            guard !trimmed.isEmpty else { return nil }
            scheme = trimmed.lowercased()
            parameters = [:]
            return
        }
        scheme = trimmed[..<space].lowercased()
        guard scheme == "bearer" || scheme == "basic" else { return nil }
        var parameters: [String: String] = [:]
        var rest = trimmed[trimmed.index(after: space)...]
        while !rest.isEmpty {
            rest = rest.drop { $0 == " " || $0 == "," }
            guard let equals = rest.firstIndex(of: "=") else { break }
            let key = rest[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            rest = rest[rest.index(after: equals)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                var end = rest.endIndex
                for index in rest.indices {
                    let character = rest[index]
                    if escaped { value.append(character); escaped = false; continue }
                    if character == "\\" { escaped = true; continue }
                    if character == "\"" { end = index; break }
                    value.append(character)
                }
                rest = end < rest.endIndex ? rest[rest.index(after: end)...] : rest[rest.endIndex...]
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<end].trimmingCharacters(in: .whitespaces)
                rest = rest[end...]
            }
            parameters[key] = value
        }
        self.parameters = parameters
    }
}
