import ContainerRuntime

/// An image reference split the way the Engine API's `POST /images/create` wants it:
/// `fromImage` (registry and repository) and `tag` (or a digest). Without tag or digest the
/// tag is `latest` (v0.3.10 pulled every tag instead).
public struct DockerImageReference: Sendable, Hashable, CustomStringConvertible {
    public var repository: String
    public var tag: String?
    public var digest: String?

    public init(_ text: String) throws(RuntimeError) {
        var rest = Substring(text)
        if rest.isEmpty || rest.contains(where: { $0 == " " || $0.isNewline }) {
            throw RuntimeError(.invalidSpec, "Image reference '\(text)' is invalid; write it as [registry/]repository[:tag][@sha256:digest].")
        }
        if let at = rest.firstIndex(of: "@") {
            digest = String(rest[rest.index(after: at)...])
            rest = rest[..<at]
        }
        // A ':' after the last '/' separates the tag (a ':' before it is a registry port).
        let lastSlash = rest.lastIndex(of: "/")
        if let colon = rest.lastIndex(of: ":"), lastSlash.map({ colon > $0 }) ?? true {
            tag = String(rest[rest.index(after: colon)...])
            rest = rest[..<colon]
        }
        repository = String(rest)
        if repository.isEmpty || tag?.isEmpty == true || digest?.isEmpty == true {
            throw RuntimeError(.invalidSpec, "Image reference '\(text)' is invalid; write it as [registry/]repository[:tag][@sha256:digest].")
        }
        if tag == nil, digest == nil { tag = "latest" }
    }

    /// The reference with its tag (or digest) made explicit.
    public var description: String {
        if let digest { return "\(repository)@\(digest)" }
        return "\(repository):\(tag ?? "latest")"
    }

    /// The registry host for `X-Registry-Auth`'s `serveraddress` (Docker Hub when none).
    public var registry: String {
        let first = repository.split(separator: "/").first.map(String.init) ?? ""
        if repository.contains("/"), first.contains(".") || first.contains(":") || first == "localhost" { return first }
        return "https://index.docker.io/v1/"
    }
}
