import PlaneCore
import RuntimePluginProtocol
import Testing

/// The subset of JSON Schema plugins describe their options with.
struct JSONSchemaValidatorTests {
    let schema = try! JSONParser.parse("""
        {"type": "object", "additionalProperties": false, "required": ["cpus"],
         "properties": {
           "cpus": {"type": "integer", "minimum": 1, "maximum": 8},
           "mode": {"enum": ["fast", "safe"]},
           "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
           "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
           "ratio": {"type": ["number", "null"], "exclusiveMaximum": 1}
         }}
        """)

    func problems(_ json: String) throws -> [String] {
        JSONSchemaValidator(schema: schema).problems(of: try JSONParser.parse(json))
    }

    @Test func validOptionsHaveNoProblems() throws {
        #expect(try problems(#"{"cpus": 2, "mode": "safe", "name": "abc", "tags": ["x"], "ratio": 0.5}"#).isEmpty)
        #expect(try problems(#"{"cpus": 8, "ratio": null}"#).isEmpty)
    }

    @Test func eachProblemIsNamedWithItsPlace() throws {
        #expect(try problems(#"{}"#) == ["options.cpus is required"])
        #expect(try problems(#"{"cpus": "two"}"#) == ["options.cpus must be an integer, not the string \"two\""])
        #expect(try problems(#"{"cpus": 2.5}"#) == ["options.cpus must be an integer, not the number 2.5"])
        #expect(try problems(#"{"cpus": 9}"#) == ["options.cpus must be at most 8"])
        #expect(try problems(#"{"cpus": 1, "mode": "slow"}"#) == [#"options.mode must be one of "fast", "safe""#])
        #expect(try problems(#"{"cpus": 1, "name": "ABCDEFG"}"#) == ["options.name takes at most 5 characters", "options.name must match ^[a-z]+$"])
        #expect(try problems(#"{"cpus": 1, "tags": ["a", 2, "c"]}"#) == ["options.tags takes at most 2 items", "options.tags[1] must be a string, not the integer 2"])
        #expect(try problems(#"{"cpus": 1, "ratio": 1}"#) == ["options.ratio must be less than 1"])
        #expect(try problems(#"{"cpus": 1, "color": "red"}"#) == ["options.color is not a known option; known: cpus, mode, name, ratio, tags"])
    }

    @Test func booleanSchemasAndCombinators() throws {
        #expect(JSONSchemaValidator(schema: .bool(false)).problems(of: .object(JSONObject())) == ["options is not allowed"])
        #expect(JSONSchemaValidator(schema: .bool(true)).problems(of: .string("anything")).isEmpty)
        let either = try JSONParser.parse(#"{"anyOf": [{"type": "string"}, {"type": "integer"}]}"#)
        #expect(JSONSchemaValidator(schema: either).problems(of: .integer(3)).isEmpty)
        #expect(JSONSchemaValidator(schema: either).problems(of: .bool(true)) == ["options matches none of the allowed forms (anyOf)"])
    }
}
