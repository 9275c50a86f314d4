-- wrk script of scripts/bench-http.sh: POSTs the JSON body in $BODY and counts answers that
-- are not 200 (reported at the end; wrk's own "Non-2xx" line counts them too).
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"

local not_ok = 0
function response(status, headers, body)
    if status ~= 200 then
        not_ok = not_ok + 1
        if not_ok <= 3 then
            io.stderr:write("status " .. status .. ": " .. body .. "\n")
        end
    end
end
