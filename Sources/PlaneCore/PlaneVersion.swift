/// This build's version, reported by `plane --version` and (later) in drone heartbeats.
public enum PlaneVersion {
    public static let current = "0.1.0"
}
