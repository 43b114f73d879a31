import PlaneCore

/// The JSON bodies of the HTTP API: an object within the wire's limits, with only known
/// fields (a typo must not silently do nothing). Errors name what was wrong.
enum HTTPJSONBody {
    /// The body as an object; `example` shows the caller a valid one.
    static func object(_ body: [UInt8], knownFields: [String], example: String) throws(ControllerError) -> JSONObject {
        let value: JSONValue
        do {
            value = try JSONParser.parse(body, limits: .wire)
        } catch {
            throw ControllerError(.invalidRequest, "The body is not valid JSON: \(error.message)")
        }
        guard let object = value.objectValue else {
            throw ControllerError(.invalidRequest, "The body must be a JSON object (e.g. \(example)), not \(value.kindName).")
        }
        try checkFields(of: object, knownFields: knownFields)
        return object
    }

    /// Throws naming the first field of `object` that is not known (`prefix` + its name).
    static func checkFields(of object: JSONObject, knownFields: [String], prefix: String = "") throws(ControllerError) {
        for key in object.keys where !knownFields.contains(key) {
            throw ControllerError(.invalidRequest, "Unknown field '\(prefix)\(key)'; the fields are \(knownFields.joined(separator: ", ")).")
        }
    }
}
