import ContainerRuntime

/// Where an image comes from: a registry (`[registry[:port]/]repository[:tag][@digest]`) or a
/// local OCI image layout (`oci-layout:/path/to/layout[:tag]`, as the `build-image` package
/// plugin writes one).
public enum OCIImageReference: Sendable, Hashable, CustomStringConvertible {
    case registry(RegistryReference)
    case layout(path: String, tag: String?)

    public static let layoutScheme = "oci-layout:"

    /// Parses `text`; a registry reference without a registry part uses `defaultRegistry`.
    public init(_ text: String, defaultRegistry: String = RegistryReference.dockerHub) throws(RuntimeError) {
        if text.hasPrefix(Self.layoutScheme) {
            var path = String(text.dropFirst(Self.layoutScheme.count))
            var tag: String?
            if let colon = path.lastIndex(of: ":"), !path[colon...].contains("/") {
                tag = String(path[path.index(after: colon)...])
                path = String(path[..<colon])
            }
            guard path.hasPrefix("/") else {
                throw RuntimeError(.invalidSpec, "Image '\(text)': an OCI layout path must be absolute, e.g. oci-layout:/var/lib/images/app:latest.")
            }
            if let tag, !RegistryReference.isValidTag(tag) {
                throw RuntimeError(.invalidSpec, "Image '\(text)': '\(tag)' is not a valid tag.")
            }
            self = .layout(path: path, tag: tag)
        } else {
            self = .registry(try RegistryReference(text, defaultRegistry: defaultRegistry))
        }
    }

    public var description: String {
        switch self {
        case .registry(let reference): reference.description
        case .layout(let path, let tag): Self.layoutScheme + path + (tag.map { ":" + $0 } ?? "")
        }
    }
}

/// `[registry[:port]/]repository[:tag][@digest]`, normalized as Docker does: a name without a
/// registry part is on the default registry (Docker Hub's single names get `library/`).
public struct RegistryReference: Sendable, Hashable, CustomStringConvertible {
    public static let dockerHub = "docker.io"

    /// The registry as written (`docker.io`, `127.0.0.1:5000`).
    public var registry: String
    public var repository: String
    public var tag: String?
    public var digest: OCIDigest?

    public init(_ text: String, defaultRegistry: String = Self.dockerHub) throws(RuntimeError) {
        func invalid(_ why: String) -> RuntimeError {
            RuntimeError(.invalidSpec, "Image '\(text)' is not a valid reference: \(why). Use [registry[:port]/]repository[:tag][@sha256:...] or oci-layout:/path[:tag].")
        }
        guard !text.isEmpty else { throw invalid("it is empty") }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            do { digest = try OCIDigest(String(rest[rest.index(after: at)...])) } catch { throw invalid("the digest is malformed") }
            rest = rest[..<at]
        }
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            let tag = String(rest[rest.index(after: colon)...])
            guard Self.isValidTag(tag) else { throw invalid("'\(tag)' is not a valid tag") }
            self.tag = tag
            rest = rest[..<colon]
        }
        var components = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if components.count > 1, components[0].contains(".") || components[0].contains(":") || components[0] == "localhost" {
            registry = components.removeFirst()
            guard Self.isValidRegistry(registry) else { throw invalid("'\(registry)' is not a valid registry host") }
        } else {
            registry = defaultRegistry
        }
        if registry == Self.dockerHub, components.count == 1 { components.insert("library", at: 0) }
        guard !components.isEmpty, components.allSatisfy(Self.isValidPathComponent) else {
            throw invalid("repository names are lowercase letters, digits and separators (. _ __ -) between '/'")
        }
        repository = components.joined(separator: "/")
        guard repository.utf8.count <= 255 else { throw invalid("the repository name is longer than 255 characters") }
    }

    /// The tag or digest to ask the registry for (`latest` when neither is given).
    public var reference: String { digest?.description ?? tag ?? "latest" }

    /// The host to talk to: Docker Hub's API lives on `registry-1.docker.io`.
    public var apiHost: String { registry == Self.dockerHub ? "registry-1.docker.io" : registry }

    public var description: String {
        var text = "\(registry)/\(repository)"
        if let tag { text += ":\(tag)" }
        if let digest { text += "@\(digest)" }
        if tag == nil, digest == nil { text += ":latest" }
        return text
    }

    static func isValidTag(_ tag: String) -> Bool {
        let bytes = Array(tag.utf8)
        guard let first = bytes.first, bytes.count <= 128, isWord(first) else { return false }
        return bytes.allSatisfy { isWord($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    static func isValidRegistry(_ host: String) -> Bool {
        !host.isEmpty && host.utf8.allSatisfy { isLowerAlphanumeric($0) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0)
            || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]") }
    }

    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
    static func isValidPathComponent(_ component: String) -> Bool {
        let bytes = Array(component.utf8)
        guard let first = bytes.first, let last = bytes.last, isLowerAlphanumeric(first), isLowerAlphanumeric(last) else { return false }
        var index = 0
        while index < bytes.count {
            if isLowerAlphanumeric(bytes[index]) { index += 1; continue }
            // A separator run: ".", "_", "__" or any number of "-".
            var end = index
            while end < bytes.count, !isLowerAlphanumeric(bytes[end]) { end += 1 }
            let separator = bytes[index..<end]
            let valid = separator.elementsEqual([UInt8(ascii: ".")]) || separator.elementsEqual([UInt8(ascii: "_")])
                || separator.elementsEqual([UInt8(ascii: "_"), UInt8(ascii: "_")]) || separator.allSatisfy { $0 == UInt8(ascii: "-") }
            guard valid else { return false }
            index = end
        }
        return true
    }

    static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    static func isWord(_ byte: UInt8) -> Bool {
        isLowerAlphanumeric(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || byte == UInt8(ascii: "_")
    }
}
