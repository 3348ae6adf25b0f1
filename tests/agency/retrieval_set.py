"""A labelled set for experience retrieval (docs/agents.md): approved work of the data-analysis
domain, two records per topic, and queries phrased as new tasks, each labelled with its topic.

Queries share some words with their topic's records and not others (as a client's wording would),
and several topics share words (revenue, monthly, customers), so a ranking that only counts common
words would mix them up.
"""

# topic: [(title, summary), (title, summary)]
RECORDS: dict[str, list[tuple[str, str]]] = {
    "regional_sales": [
        ("Q2 sales by region", "Revenue per region and plan; North leads with the Pro plan, South trails on units."),
        ("Annual sales per sales region", "Regional revenue totals for the year; the West region grew fastest."),
    ],
    "churn": [
        ("Subscriber churn analysis", "Monthly churn rate of subscribers by plan; cancellations peak after trials."),
        ("Why customers cancel", "Churned customers by tenure and reason; most cancel within three months."),
    ],
    "inventory": [
        ("Warehouse stock levels", "Inventory on hand per warehouse and SKU; six items below reorder point."),
        ("Stockout risk report", "Days of stock left per product; reorder quantities for the low inventory SKUs."),
    ],
    "web_traffic": [
        ("Website traffic sources", "Sessions and bounce rate by traffic source; organic search brings most visits."),
        ("Landing page visits", "Page views, sessions and conversion per landing page from the web analytics export."),
    ],
    "payroll": [
        ("Payroll cost breakdown", "Salary and overtime cost per department; engineering payroll rose 8 %."),
        ("Overtime hours by team", "Overtime hours and pay per team and month; support works the most overtime."),
    ],
    "marketing_roi": [
        (
            "Campaign return on ad spend",
            "ROI per marketing campaign and channel; paid social returns least.",
        ),
        ("Ad spend efficiency", "Cost per acquisition and return on ad spend for each campaign this quarter."),
    ],
    "satisfaction": [
        ("Customer satisfaction survey", "NPS and CSAT scores by product; detractors cite slow support replies."),
        ("Survey responses summary", "Satisfaction ratings per question of the customer survey, with score trends."),
    ],
    "delivery_times": [
        (
            "Shipping delays by carrier",
            "Average delivery time per carrier and route; late shipments on Fridays.",
        ),
        ("On-time delivery rate", "Share of parcels delivered on time per carrier, depot and week."),
    ],
    "energy": [
        ("Building energy consumption", "Electricity kWh per building and month; the data centre uses half the power."),
        ("Power usage of sites", "Energy use and cost per site; heating drives winter electricity peaks."),
    ],
    "loan_defaults": [
        ("Loan default rates", "Default rate per credit grade and loan term; grade E loans default most."),
        ("Credit risk of borrowers", "Borrower defaults by income band and credit score for the loan book."),
    ],
}

# (query title, query description, topic)
QUERIES: list[tuple[str, str, str]] = [
    ("Sales per region for Q3", "Totals of revenue per region, and which region sells the most.", "regional_sales"),
    ("Regional breakdown of our sales", "Compare the regions on units and revenue.", "regional_sales"),
    ("How many subscribers did we lose", "Churn by month and plan for our subscription service.", "churn"),
    ("Cancellation reasons", "Which customers cancel and after how long (churn by tenure).", "churn"),
    ("Which products are running out", "Stock on hand and reorder needs per SKU.", "inventory"),
    ("Inventory check for the warehouses", "Low stock items per warehouse.", "inventory"),
    ("Where do our website visitors come from", "Traffic sources, sessions and bounce rate.", "web_traffic"),
    ("Landing page performance", "Visits and conversion for each landing page.", "web_traffic"),
    ("Salary costs per department", "Payroll totals and how overtime adds to them.", "payroll"),
    ("Overtime analysis", "Hours of overtime per team over the year.", "payroll"),
    ("Are our ads worth it", "Return on ad spend for every campaign.", "marketing_roi"),
    ("Marketing campaign ROI", "Which campaign and channel return most per dollar spent.", "marketing_roi"),
    ("NPS results", "Summarise the customer satisfaction survey scores.", "satisfaction"),
    ("Customer survey analysis", "Ratings per survey question and their trends.", "satisfaction"),
    ("Late deliveries", "Which carrier delivers late and on which routes.", "delivery_times"),
    ("Carrier performance", "On-time delivery share per carrier and depot.", "delivery_times"),
    ("Electricity bills by building", "Energy consumption in kWh and its cost.", "energy"),
    ("Reduce our power usage", "Where the sites use the most energy and when.", "energy"),
    ("Which loans go bad", "Default rates by credit grade.", "loan_defaults"),
    ("Borrower risk profile", "Defaults by credit score and income of borrowers.", "loan_defaults"),
    ("Top selling region last year", "Annual revenue per sales region.", "regional_sales"),
    ("Reorder planning", "Days of inventory left and what to reorder.", "inventory"),
]

# Records of another domain that share words with the queries: retrieval must never return them.
OTHER_DOMAIN: list[tuple[str, str]] = [
    ("Sales contract review", "Regional sales agreement: revenue share clause and region exclusivity."),
    ("Loan agreement terms", "Default clauses and credit terms of a loan agreement."),
]
