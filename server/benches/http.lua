-- wrk script of scripts/bench-http.sh: POSTs the JSON body in $BODY; with $RATE (requests per
-- second over all connections, with $CONNECTIONS connections) each connection waits between
-- requests so that the offered load is about RATE, otherwise requests go back to back
-- (closed loop, the server's peak). Answers other than 200 are reported (wrk's own "Non-2xx"
-- line counts them too).
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"

local rate = tonumber(os.getenv("RATE") or "")
local connections = tonumber(os.getenv("CONNECTIONS") or "64")

function delay()
    if rate then
        -- Milliseconds between one connection's requests, jittered so they do not align.
        local gap = connections * 1000 / rate
        return gap * (0.5 + math.random())
    end
    return 0
end

local not_ok = 0
function response(status, headers, body)
    if status ~= 200 then
        not_ok = not_ok + 1
        if not_ok <= 3 then
            io.stderr:write("status " .. status .. ": " .. body .. "\n")
        end
    end
end
