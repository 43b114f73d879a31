import PlaneCore

/// Reads the fields of one JSON object of the protocol, with errors that name the field.
public struct PluginFields: Sendable {
    public let object: JSONObject
    let context: String

    public init(_ value: JSONValue, _ context: String) throws(PluginProtocolError) {
        guard let object = value.objectValue else {
            throw PluginProtocolError(.malformedPayload, "\(context) must be a JSON object, not \(value.kindName).")
        }
        self.object = object
        self.context = context
    }

    func missing(_ key: String, _ kind: String) -> PluginProtocolError {
        PluginProtocolError(.malformedPayload, "\(context): \"\(key)\" must be \(kind).")
    }

    public func string(_ key: String) throws(PluginProtocolError) -> String {
        guard let value = object[key]?.stringValue else { throw missing(key, "a string") }
        return value
    }

    public func optionalString(_ key: String) throws(PluginProtocolError) -> String? {
        guard let value = object[key], !value.isNull else { return nil }
        guard let text = value.stringValue else { throw missing(key, "a string or null") }
        return text
    }

    public func integer(_ key: String) throws(PluginProtocolError) -> Int64 {
        guard let value = object[key]?.int64Value else { throw missing(key, "an integer") }
        return value
    }

    public func optionalInteger(_ key: String) throws(PluginProtocolError) -> Int64? {
        guard let value = object[key], !value.isNull else { return nil }
        guard let number = value.int64Value else { throw missing(key, "an integer or null") }
        return number
    }

    public func double(_ key: String) throws(PluginProtocolError) -> Double {
        guard let value = object[key]?.doubleValue else { throw missing(key, "a number") }
        return value
    }

    public func bool(_ key: String, default fallback: Bool) throws(PluginProtocolError) -> Bool {
        guard let value = object[key], !value.isNull else { return fallback }
        guard let flag = value.boolValue else { throw missing(key, "true or false") }
        return flag
    }

    public func optionalObject(_ key: String) throws(PluginProtocolError) -> JSONObject? {
        guard let value = object[key], !value.isNull else { return nil }
        guard let nested = value.objectValue else { throw missing(key, "an object or null") }
        return nested
    }

    public func array(_ key: String) throws(PluginProtocolError) -> [JSONValue] {
        guard let value = object[key], !value.isNull else { return [] }
        guard let items = value.arrayValue else { throw missing(key, "an array") }
        return items
    }

    public func backendID(_ key: String = "backend_id") throws(PluginProtocolError) -> BackendID {
        let text = try string(key)
        do { return try BackendID(text) } catch { throw PluginProtocolError(.malformedPayload, "\(context): \"\(key)\" is not a backend id: \(error.message)") }
    }
}
